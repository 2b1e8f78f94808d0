"""Inversion (models/inversion.py) and the latent encoder (models/encoder.py, workflows/encoder.py),
on the tiny random StyleGAN2 of conftest.py."""
from __future__ import annotations

import pytest
import torch

from conftest import make_tiny_stylegan2
from mocohd_cli import load_backbone
from mocohd_cli.infra.errors import MocohdError
from mocohd_cli.models.encoder import LatentEncoder, load_encoder, read_encoder_info
from mocohd_cli.models.inversion import (feature_distance, invert, invert_images, latent_statistics, psnr,
                                         render_fixed_noise, search_start)
from mocohd_cli.workflows.encoder import EncoderSettings, train_encoder

# the smallest timm architecture that trains in a blink at 32 px
TINY_ARCH = "resnet10t"


def own_images(backbone, n, *, seed=3, noise="const", seeds=None):
    """Images the backbone made from known latents, clamped to [-1, 1] as an image file holds them."""
    w = backbone.sample_latent(n, rng=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        images = render_fixed_noise(backbone, w[:, None], condition=None, noise=noise, seeds=seeds)[:, 0]
    return w, images.clamp(-1, 1)


def test_psnr_known_values_and_cap():
    a = torch.zeros(2, 3, 8, 8)
    # a difference of 0.2 in [-1, 1] is 0.1 in [0, 1]: MSE 0.01, 20 dB
    assert psnr(a, a + 0.2).tolist() == pytest.approx([20.0, 20.0], abs=1e-4)
    assert psnr(a, a).tolist() == [100.0, 100.0]  # capped, never inf
    assert psnr(a - 1, a + 3.0).tolist() == pytest.approx([0.0, 0.0], abs=1e-4)  # black vs white, after clamping


def test_feature_distance_is_zero_for_same_maps_and_ignores_scale():
    maps = [torch.randn(2, 8, 4, 4), torch.randn(2, 16, 2, 2)]
    assert feature_distance(maps, maps).abs().max() < 1e-6
    assert feature_distance(maps, [3 * m for m in maps]).abs().max() < 1e-5  # channel-normalised
    assert (feature_distance(maps, [torch.randn_like(m) for m in maps]) > 0.1).all()


def test_inverting_the_backbones_own_images_reaches_a_high_psnr(tiny_stylegan2):
    _, images = own_images(tiny_stylegan2, 4)
    result = invert_images(tiny_stylegan2, images, candidates=64, steps=300)
    assert result.psnr.min() > 30, result.psnr
    assert (result.psnr > result.start_psnr + 10).all()
    assert result.losses[-1] < 0.05 * result.losses[0]
    # the returned images are the renderings of the returned latents
    again = render_fixed_noise(tiny_stylegan2, result.latents[:, None], condition=None, noise="const")[:, 0]
    assert torch.allclose(again, result.images, atol=1e-5)


def test_the_candidate_search_starts_closer_than_the_mean(tiny_stylegan2):
    _, images = own_images(tiny_stylegan2, 4)
    stats = latent_statistics(tiny_stylegan2)
    start = search_start(tiny_stylegan2, images, stats=stats, candidates=64)
    from_search = invert(tiny_stylegan2, images, init=start, stats=stats, steps=0)
    from_mean = invert(tiny_stylegan2, images, stats=stats, steps=0)
    assert from_search.psnr.mean() > from_mean.psnr.mean()
    assert (from_search.psnr == from_search.start_psnr).all()  # steps=0: the start as it is


def test_random_noise_stays_fixed_per_seed(tiny_stylegan2):
    seeds = [11, 12]
    w, images = own_images(tiny_stylegan2, 2, noise="random", seeds=seeds)
    same = render_fixed_noise(tiny_stylegan2, w[:, None], condition=None, noise="random", seeds=seeds)[:, 0]
    other = render_fixed_noise(tiny_stylegan2, w[:, None], condition=None, noise="random", seeds=[13, 14])[:, 0]
    assert torch.equal(same.clamp(-1, 1), images)
    assert not torch.allclose(other.clamp(-1, 1), images)
    # video 1's noise does not depend on video 0 being in the batch
    alone = render_fixed_noise(tiny_stylegan2, w[1:, None], condition=None, noise="random", seeds=seeds[1:])[:, 0]
    assert torch.allclose(alone.clamp(-1, 1), images[1:], atol=1e-5)
    # starting from the right latent with the same noise is a perfect reconstruction
    exact = invert(tiny_stylegan2, images, init=w, steps=0, noise="random", seeds=seeds)
    assert exact.psnr.min() > 60


def test_inversion_rejects_images_of_the_wrong_size(tiny_stylegan2):
    with pytest.raises(MocohdError, match="resolution"):
        invert(tiny_stylegan2, torch.zeros(1, 3, 16, 16), steps=1)


# -- encoder -------------------------------------------------------------------------------------
def test_encoder_training_loss_falls_and_the_file_records_the_backbone(tiny_stylegan2_checkpoint, tmp_path):
    settings = EncoderSettings(checkpoint=str(tiny_stylegan2_checkpoint), out=str(tmp_path / "e.safetensors"),
                               arch=TINY_ARCH, steps=40, batch_size=8, lr=3e-3, log_every=10, device="cpu")
    result = train_encoder(settings)
    first, last = result.history[0], result.history[-1]
    assert last["total"] < 0.7 * first["total"], result.history
    assert last["latent"] < first["latent"] and {"latent", "pixel", "feature"} <= set(last)
    info = read_encoder_info(result.path)
    backbone = load_backbone("stylegan2", tiny_stylegan2_checkpoint)
    assert info["arch"] == TINY_ARCH and info["latent_dim"] == 32 and info["image_size"] == 32
    assert info["backbone"] == "stylegan2" and info["backbone_sha256"] == backbone.checkpoint_sha256
    encoder = load_encoder(result.path, backbone)
    stats = latent_statistics(backbone)
    assert torch.allclose(encoder.latent_mean, stats.mean) and float(encoder.latent_scale) == pytest.approx(stats.scale)
    # the same settings give the same encoder
    again = train_encoder(EncoderSettings(**{**settings.__dict__, "out": str(tmp_path / "f.safetensors")}))
    assert again.history == result.history


def test_a_mismatched_encoder_is_refused(tiny_stylegan2_checkpoint, tmp_path):
    backbone = load_backbone("stylegan2", tiny_stylegan2_checkpoint)
    encoder = LatentEncoder(TINY_ARCH, backbone.latent_dim, backbone.resolution)
    from mocohd_cli.models.encoder import backbone_record

    path = encoder.save(tmp_path / "e.safetensors", **backbone_record(backbone))
    load_encoder(path, backbone)  # its own backbone: fine
    other_weights = tmp_path / "other.pt"
    torch.save({"g_ema": make_tiny_stylegan2(seed=1).state_dict()}, other_weights)
    with pytest.raises(MocohdError, match="train-encoder --checkpoint") as error:
        load_encoder(path, load_backbone("stylegan2", other_weights))
    assert "e.safetensors" in str(error.value)
    wider = tmp_path / "wider.pt"
    torch.save({"g_ema": make_tiny_stylegan2(style_dim=16).state_dict()}, wider)
    with pytest.raises(MocohdError, match="32-d latents but the backbone's are 16-d"):
        load_encoder(path, load_backbone("stylegan2", wider))
    bigger = tmp_path / "bigger.pt"
    torch.save({"g_ema": make_tiny_stylegan2(size=64, channels={4: 32, 8: 32, 16: 16, 32: 8, 64: 8}).state_dict()},
               bigger)
    with pytest.raises(MocohdError, match="reads 32 px images"):
        load_encoder(path, load_backbone("stylegan2", bigger))
    not_an_encoder = tmp_path / "motion.safetensors"
    from mocohd_cli.models.motion import MotionGenerator

    MotionGenerator(32, h_dim=8, n_pca=4).save(not_an_encoder)
    with pytest.raises(MocohdError, match="not a mocohd encoder"):
        load_encoder(not_an_encoder, backbone)


def test_encoder_weights_load_and_wrong_ones_are_refused(tiny_stylegan2_checkpoint, tmp_path):
    import timm
    from safetensors.torch import save_file

    pretrained = timm.create_model(TINY_ARCH, num_classes=1000)  # another head, as ImageNet weights have
    weights = tmp_path / "pretrained.safetensors"
    save_file({k: v.contiguous() for k, v in pretrained.state_dict().items()}, str(weights))
    settings = EncoderSettings(checkpoint=str(tiny_stylegan2_checkpoint), out=str(tmp_path / "e.safetensors"),
                               arch=TINY_ARCH, encoder_weights=str(weights), steps=1, batch_size=2, lr=0.0,
                               device="cpu")
    train_encoder(settings)
    encoder = load_encoder(settings.out)
    assert torch.equal(encoder.net.conv1[0].weight, pretrained.conv1[0].weight)  # lr 0: kept as given
    assert read_encoder_info(settings.out)["training"]["encoder_weights_sha256"]
    other = tmp_path / "resnet18.safetensors"
    save_file({k: v.contiguous() for k, v in timm.create_model("resnet18").state_dict().items()}, str(other))
    with pytest.raises(MocohdError, match="do not fit timm's resnet10t"):
        train_encoder(EncoderSettings(**{**settings.__dict__, "encoder_weights": str(other)}))


def test_encoder_settings_errors(tiny_stylegan2_checkpoint, tmp_path):
    with pytest.raises(MocohdError, match="timm has no architecture"):
        train_encoder(EncoderSettings(checkpoint=str(tiny_stylegan2_checkpoint), out=str(tmp_path / "e.safetensors"),
                                      arch="no_such_net", steps=1, device="cpu"))
    with pytest.raises(MocohdError, match=".safetensors"):
        EncoderSettings(checkpoint=str(tiny_stylegan2_checkpoint), out=str(tmp_path / "e.pt")).validate()
    with pytest.raises(MocohdError, match="weights"):
        EncoderSettings(checkpoint="c", latent_weight=0, pixel_weight=0, feature_weight=0).validate()


def test_inverting_with_an_encoder_starts_from_its_guess(tiny_stylegan2, tmp_path):
    _, images = own_images(tiny_stylegan2, 2)
    encoder = LatentEncoder(TINY_ARCH, 32, 32, latent_mean=latent_statistics(tiny_stylegan2).mean).eval()
    result = invert_images(tiny_stylegan2, images, encoder=encoder, steps=0)
    with torch.no_grad():
        assert torch.allclose(result.latents, encoder(images), atol=1e-5)
    tuned = invert_images(tiny_stylegan2, images, encoder=encoder, steps=30)
    assert (tuned.psnr > result.psnr).all()


def test_the_anchor_pulls_latents_towards_it_and_weight_zero_changes_nothing(tiny_stylegan2):
    _, images = own_images(tiny_stylegan2, 3)
    stats = latent_statistics(tiny_stylegan2)
    anchor = tiny_stylegan2.sample_latent(3, rng=torch.Generator().manual_seed(11))
    plain = invert(tiny_stylegan2, images, init=anchor, stats=stats, steps=30)
    unweighted = invert(tiny_stylegan2, images, init=anchor, stats=stats, steps=30, anchor=anchor, anchor_weight=0.0)
    assert torch.equal(plain.latents, unweighted.latents)
    pulled = invert(tiny_stylegan2, images, init=anchor, stats=stats, steps=30, anchor=anchor, anchor_weight=10.0)
    distance = lambda r: (r.latents - anchor).pow(2).mean(1)
    assert (distance(pulled) < 0.5 * distance(plain)).all()


def test_pixel_weights_are_a_weighted_mean_of_the_pixel_error(tiny_stylegan2):
    _, images = own_images(tiny_stylegan2, 3)
    stats = latent_statistics(tiny_stylegan2)
    start = tiny_stylegan2.sample_latent(3, rng=torch.Generator().manual_seed(11))
    weights = torch.rand(3, 1, *images.shape[-2:], generator=torch.Generator().manual_seed(2)) * 10
    scored = invert(tiny_stylegan2, images, init=start, stats=stats, steps=0, pixel_weights=weights)
    with torch.no_grad():
        rendered = render_fixed_noise(tiny_stylegan2, start[:, None], condition=None, noise="const")[:, 0]
    error = (rendered.clamp(-1, 1) - images).pow(2) * weights / weights.mean((1, 2, 3), keepdim=True)
    assert scored.losses[0] == pytest.approx(float(error.flatten(1).mean(1).mean()), rel=1e-5)
    plain = invert(tiny_stylegan2, images, init=start, stats=stats, steps=25)
    uniform = invert(tiny_stylegan2, images, init=start, stats=stats, steps=25,
                     pixel_weights=torch.full((3, 1, *images.shape[-2:]), 3.0))
    assert torch.equal(plain.latents, uniform.latents)  # only the weights' ratios count


def test_motion_pixel_weights_mark_what_moved():
    from mocohd_cli.models.inversion import motion_pixel_weights

    first = torch.zeros(1, 3, 8, 8)
    previous = first.clone()
    frame = first.clone()
    frame[..., 4, 4] = 1.0     # moved since the previous frame
    previous[..., 1, 6] = 0.5  # moved since the first frame, and still there at half the change
    frame[..., 1, 6] = 0.5
    weights = motion_pixel_weights(frame, previous, first, 10.0)
    assert weights.shape == (1, 1, 8, 8)
    assert weights[0, 0, 4, 4] == 11.0 and weights[0, 0, 3, 5] == 11.0  # grown by a pixel each way
    assert weights[0, 0, 1, 6] == 6.0
    assert weights[0, 0, 7, 0] == 1.0
    assert torch.equal(motion_pixel_weights(first, first, first, 10.0), torch.ones(1, 1, 8, 8))


def test_project_videos_follows_a_known_trajectory(tiny_stylegan2):
    from mocohd_cli.models.inversion import project_videos

    stats = latent_statistics(tiny_stylegan2)
    w0 = tiny_stylegan2.sample_latent(2, rng=torch.Generator().manual_seed(5))
    direction = torch.randn(2, w0.shape[1], generator=torch.Generator().manual_seed(6)) * stats.scale
    trajectory = w0[:, None] + 0.3 * torch.linspace(0, 1, 4)[None, :, None] * direction[:, None]
    with torch.no_grad():
        videos = tiny_stylegan2.synthesize(trajectory, noise="const").clamp(-1, 1)
    calls = []
    result = project_videos(tiny_stylegan2, videos, first_steps=300, steps=60, candidates=64, stats=stats,
                            progress=lambda done, total: calls.append((done, total)))
    assert result.latents.shape == trajectory.shape and result.frames.shape == videos.shape
    assert result.psnr.shape == (2, 4) and result.psnr.min() > 25, result.psnr
    assert calls == [(1, 3), (2, 3), (3, 3)]
    # frame 0 is inverted exactly as invert_images does it
    first = invert_images(tiny_stylegan2, videos[:, 0], candidates=64, steps=300, stats=stats)
    assert torch.equal(result.latents[:, 0], first.latents)
    # the renderings are those of the latents
    with torch.no_grad():
        again = tiny_stylegan2.synthesize(result.latents, noise="const")
    assert torch.allclose(again, result.frames, atol=1e-5)
    with pytest.raises(MocohdError, match=r"\[N, T, 3, H, W\]"):
        project_videos(tiny_stylegan2, videos[:, 0], stats=stats)
    with pytest.raises(MocohdError, match="motion weight"):
        project_videos(tiny_stylegan2, videos, stats=stats, motion_weight=-1.0)
