"""StyleGAN2 backbone: rosinality layout, exact math, noise semantics, files and the convert command."""
from __future__ import annotations

import argparse
import json
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import make_tiny_stylegan2
from typer.testing import CliRunner

from mocohd_cli.models.backbone import infer_backbone_name, load_backbone
from mocohd_cli.cli import app
from mocohd_cli.infra.errors import MocohdError
from mocohd_cli.infra.files import safetensors_metadata
from mocohd_plugins.stylegan2 import Discriminator, StyleGAN2Generator
from mocohd_plugins.stylegan2.discriminator import minibatch_stddev

runner = CliRunner()

# ---------------------------------------------------------------- independent reference math
# A direct transcription of the published StyleGAN2 forward pass (rosinality's fused path): per-sample
# modulated + demodulated weights, grouped convolutions, upfirdn2d by explicit zero insertion.
# It reads the state dict by rosinality's names and shares no code with the plugin.
SQRT2 = math.sqrt(2)
FIR = torch.tensor([1.0, 3.0, 3.0, 1.0])
FIR2D = torch.outer(FIR, FIR) / torch.outer(FIR, FIR).sum()


def ref_upfirdn2d(x, kernel, up, pad0, pad1):
    n, c, h, w = x.shape
    if up > 1:
        zeros = x.new_zeros(n, c, h * up, w * up)
        zeros[:, :, ::up, ::up] = x
        x = zeros
    x = F.pad(x, (pad0, pad1, pad0, pad1))
    weight = kernel.flip(0, 1)[None, None].repeat(c, 1, 1, 1)
    return F.conv2d(x, weight, groups=c)


def ref_linear(x, sd, key, lr_mul=1.0):
    weight, bias = sd[f"{key}.weight"], sd[f"{key}.bias"]
    return F.linear(x, weight * lr_mul / math.sqrt(weight.shape[1]), bias * lr_mul)


def ref_modconv(x, w, sd, key, demodulate=True, upsample=False):
    weight = sd[f"{key}.weight"]  # [1, O, I, k, k]
    _, o, i, k, _ = weight.shape
    n, _, h, wd = x.shape
    style = ref_linear(w, sd, f"{key}.modulation")
    weight = weight / math.sqrt(i * k * k) * style.view(n, 1, i, 1, 1)
    if demodulate:
        weight = weight * torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + 1e-8).view(n, o, 1, 1, 1)
    if upsample:
        weight = weight.transpose(1, 2).reshape(n * i, o, k, k)
        out = F.conv_transpose2d(x.reshape(1, n * i, h, wd), weight, stride=2, groups=n)
        out = out.view(n, o, *out.shape[2:])
        return ref_upfirdn2d(out, FIR2D * 4, 1, 1, 1)
    out = F.conv2d(x.reshape(1, n * i, h, wd), weight.reshape(n * o, i, k, k), padding=k // 2, groups=n)
    return out.view(n, o, h, wd)


def ref_styled(x, w, sd, key, noise, upsample=False):
    out = ref_modconv(x, w, sd, f"{key}.conv", upsample=upsample)
    out = out + sd[f"{key}.noise.weight"] * noise
    return F.leaky_relu(out + sd[f"{key}.activate.bias"].view(1, -1, 1, 1), 0.2) * SQRT2


def ref_to_rgb(x, w, sd, key, skip=None):
    out = ref_modconv(x, w, sd, f"{key}.conv", demodulate=False) + sd[f"{key}.bias"]
    if skip is not None:
        out = out + ref_upfirdn2d(skip, FIR2D * 4, 2, 2, 1)
    return out


def ref_mapping(z, sd, n_mlp):
    x = z * torch.rsqrt(z.pow(2).mean(1, keepdim=True) + 1e-8)
    for layer in range(1, n_mlp + 1):
        weight = sd[f"style.{layer}.weight"]
        x = F.linear(x, weight * 0.01 / math.sqrt(weight.shape[1]))
        x = F.leaky_relu(x + sd[f"style.{layer}.bias"] * 0.01, 0.2) * SQRT2
    return x


def ref_generator(w, sd):
    """Images of w [N, D] with the stored (const) noise buffers."""
    noise = [sd[f"noises.noise_{i}"] for i in range(sum(k.startswith("noises.") for k in sd))]
    x = sd["input.input"].repeat(w.shape[0], 1, 1, 1)
    x = ref_styled(x, w, sd, "conv1", noise[0])
    skip = ref_to_rgb(x, w, sd, "to_rgb1")
    for i in range(len(noise) // 2):
        x = ref_styled(x, w, sd, f"convs.{2 * i}", noise[2 * i + 1], upsample=True)
        x = ref_styled(x, w, sd, f"convs.{2 * i + 1}", noise[2 * i + 2])
        skip = ref_to_rgb(x, w, sd, f"to_rgbs.{i}", skip)
    return skip


# ------------------------------------------------------------------------------- helpers
def frames_of(model, latents, **kwargs):
    with torch.no_grad():
        return model.synthesize(latents, **kwargs)


def latents_for(model, b, t, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(b, t, model.latent_dim, generator=gen)


def save_rosinality(path, model, **extra):
    torch.save({"g_ema": model.state_dict(), **extra}, path)
    return path


# --------------------------------------------------------------------------------- tests
def test_matches_reference_math_with_const_noise():
    model = make_tiny_stylegan2(seed=1, channels={4: 24, 8: 20, 16: 12, 32: 6}).eval()
    sd = model.state_dict()
    w = model.mapping(torch.randn(3, model.style_dim))
    with torch.no_grad():
        expected = ref_generator(w, sd)
        got = model.synthesize(w[:, None], noise="const")[:, 0]
        nchw = StyleGAN2Generator(**model.export_config(), channels_last=False)
        nchw.load_state_dict(sd)
        got_nchw = nchw.synthesize(w[:, None], noise="const")[:, 0]
    # the autograd path (no in-place shortcuts) computes the same
    got_grad = model.synthesize(w.detach().requires_grad_(True)[:, None], noise="const")[:, 0]
    assert got.shape == (3, 3, 32, 32)
    assert expected.abs().max() > 0.5  # a real signal, not zeros
    for result in (got, got_nchw, got_grad):
        assert (result - expected).abs().max().item() < 1e-4
    # in-place inference never touches the weights, whatever the batch size and layout
    before = {k: v.clone() for k, v in sd.items()}
    with torch.no_grad():
        nchw.synthesize(w[:1, None], noise="random")
        model.synthesize(w[:1, None], noise="random")
    assert all(torch.equal(before[k], v) for k, v in nchw.state_dict().items())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    z = torch.randn(5, model.style_dim)
    assert torch.allclose(model.mapping(z), ref_mapping(z, sd, 2), atol=1e-5)


def test_new_weights_are_used_after_in_place_updates():
    model = make_tiny_stylegan2(seed=2).eval()
    model.set_low_precision(min_resolution=0, min_channels=0)  # every conv in bf16 under autocast (cast weights cached)
    w = model.mapping(torch.randn(2, model.style_dim)).detach()
    frames_of(model, w[:, None], noise="const")  # fills any cache derived from the weights
    with torch.autocast("cpu", dtype=torch.bfloat16):
        frames_of(model, w[:, None], noise="const")
    other = make_tiny_stylegan2(seed=3).state_dict()
    model.load_state_dict(other)  # copies in place: same storage, new values
    with torch.no_grad():
        expected = ref_generator(w, other)
        assert (model.synthesize(w[:, None], noise="const")[:, 0] - expected).abs().max() < 1e-4
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = model.synthesize(w[:, None], noise="const")[:, 0]
        assert (bf16 - expected).abs().max() < 0.05 * expected.abs().max()


def test_rosinality_state_dict_loads_strictly_and_config_is_inferred(tmp_path):
    # non-standard widths, 16 px, 24-d W, 3 mapping layers
    source = make_tiny_stylegan2(size=16, style_dim=24, n_mlp=3, channels={4: 20, 8: 12, 16: 10})
    # as rosinality's train.py writes it, with its argparse.Namespace under 'args'
    path = save_rosinality(tmp_path / "g.pt", source, latent_avg=torch.full((24,), 0.5),
                           d={"x": torch.zeros(1)}, g={"x": torch.zeros(1)}, ada_aug_p=0.2,
                           args=argparse.Namespace(size=16, channel_multiplier=2, lr=0.002))
    model = StyleGAN2Generator.from_checkpoint(path)
    assert (model.size, model.style_dim, model.n_mlp) == (16, 24, 3)
    assert model.channels == {4: 20, 8: 12, 16: 10}
    assert model.resolution == 16 and model.latent_dim == model.z_dim == 24 and model.condition_dim == 0
    assert model.latent_avg_source == "checkpoint" and torch.equal(model.mean_latent(), torch.full((24,), 0.5))
    # the very tensors, under rosinality's names
    for key, value in source.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    for key in ("noises.noise_4", "to_rgbs.1.upsample.kernel", "convs.2.conv.blur.kernel", "style.3.bias",
                "conv1.activate.bias", "convs.3.noise.weight", "to_rgb1.conv.modulation.bias"):
        assert key in model.state_dict()
    StyleGAN2Generator(**model.export_config()).load_state_dict(source.state_dict(), strict=True)
    # a bare half-precision state dict, saved from DDP with 'module.' prefixes
    torch.save({f"module.{k}": v.half() for k, v in source.state_dict().items()}, tmp_path / "bare.pth")
    bare = StyleGAN2Generator.from_checkpoint(tmp_path / "bare.pth")
    assert bare.latent_avg is None and bare.channels == model.channels
    assert all(p.dtype == torch.float32 and p.requires_grad for p in bare.parameters())


def test_default_widths_follow_channel_multiplier():
    model = StyleGAN2Generator(64, style_dim=8, n_mlp=1, channel_multiplier=1, channels={4: 16, 8: 16, 16: 16, 32: 16})
    assert model.channels == {4: 16, 8: 16, 16: 16, 32: 16, 64: 256}
    assert model.convs[-1].conv.weight.shape == (1, 256, 256, 3, 3)
    assert len(model.convs) == 8 and model.num_layers == 9 and model.noises.noise_8.shape == (1, 1, 64, 64)


def test_truncation_uses_latent_avg_or_a_seeded_estimate(tiny_stylegan2):
    z = torch.randn(4, tiny_stylegan2.z_dim)
    avg = tiny_stylegan2.mean_latent()
    w = tiny_stylegan2.mapping(z)
    tiny_stylegan2.truncation = 0.5
    assert torch.allclose(tiny_stylegan2.mapping(z), avg + 0.5 * (w - avg), atol=1e-6)
    tiny_stylegan2.truncation = 0.0
    assert torch.allclose(tiny_stylegan2.mapping(z), avg.expand(4, -1), atol=1e-6)
    tiny_stylegan2.truncation = 1.0
    fresh = make_tiny_stylegan2()
    assert fresh.latent_avg is None
    estimate = fresh.mean_latent()
    assert fresh.latent_avg_source == "estimated"
    assert torch.allclose(estimate, avg)  # the fixture stored the same seeded estimate
    assert (estimate - fresh.mapping(torch.randn(4096, fresh.z_dim)).mean(0)).abs().max() < 0.1


def test_noise_is_shared_by_the_frames_of_a_video(tiny_stylegan2):
    w = latents_for(tiny_stylegan2, 3, 1)
    latents = w.expand(3, 4, -1)  # every frame of a video has the same w
    gen = torch.Generator().manual_seed(0)
    videos = frames_of(tiny_stylegan2, latents, noise="random", rng=gen)
    assert videos.shape == (3, 4, 3, 32, 32)
    assert torch.equal(videos[:, 0:1].expand_as(videos), videos)
    # the same w in two videos: different noise, different frames
    same_w = frames_of(tiny_stylegan2, w[:1].expand(2, 2, -1), noise="random", rng=gen)
    assert (same_w[0, 0] - same_w[1, 0]).abs().max() > 1e-3
    # const / none are deterministic and differ from each other
    const = frames_of(tiny_stylegan2, w[:1].expand(2, 2, -1), noise="const")
    none = frames_of(tiny_stylegan2, w[:1].expand(2, 2, -1), noise="none")
    assert torch.equal(const[0], const[1]) and torch.equal(none[0], none[1])
    assert (const - none).abs().max() > 1e-3
    # moving latents: frame t of video b is rendered with video b's one draw of noise maps
    moving = latents_for(tiny_stylegan2, 2, 3)
    videos = frames_of(tiny_stylegan2, moving, rng=torch.Generator().manual_seed(5))
    maps = tiny_stylegan2.make_noise(2, rng=torch.Generator().manual_seed(5))
    with torch.no_grad():
        expected = tiny_stylegan2.render(moving.reshape(6, -1), [m.repeat_interleave(3, dim=0) for m in maps])
    assert torch.allclose(videos.reshape(6, 3, 32, 32), expected, atol=1e-6)
    with pytest.raises(MocohdError):
        tiny_stylegan2.synthesize(latents, noise="fresh")


def test_seeded_rng_gives_the_same_frames(tiny_stylegan2):
    latents = latents_for(tiny_stylegan2, 2, 3)
    a = frames_of(tiny_stylegan2, latents, rng=torch.Generator().manual_seed(7))
    b = frames_of(tiny_stylegan2, latents, rng=torch.Generator().manual_seed(7))
    c = frames_of(tiny_stylegan2, latents, rng=torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert (a - c).abs().max() > 1e-3


def test_gradients_reach_latents_but_not_frozen_parameters(tiny_stylegan2):
    latents = latents_for(tiny_stylegan2, 2, 2).requires_grad_(True)
    frames = tiny_stylegan2.synthesize(latents, noise="random", rng=torch.Generator().manual_seed(0))
    frames.square().mean().backward()
    assert latents.grad is not None and latents.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in tiny_stylegan2.parameters())


def test_gradients_after_inference_mode_calls(tiny_stylegan2):
    latents = latents_for(tiny_stylegan2, 1, 2)
    with torch.inference_mode():  # fills the frozen weights' caches with inference tensors
        tiny_stylegan2.synthesize(latents)
    latents.requires_grad_(True)
    tiny_stylegan2.synthesize(latents).sum().backward()
    assert latents.grad.abs().sum() > 0


def test_plain_forward_trains_parameters():
    model = make_tiny_stylegan2()
    images = model(torch.randn(2, model.z_dim), rng=torch.Generator().manual_seed(0))
    assert images.shape == (2, 3, 32, 32)
    images.mean().backward()
    grads = {name: p.grad for name, p in model.named_parameters()}
    assert all(g is not None for g in grads.values())
    assert grads["style.1.weight"].abs().sum() > 0 and grads["convs.0.conv.weight"].abs().sum() > 0


def test_bf16_autocast_is_close_to_fp32(tiny_stylegan2):
    latents = latents_for(tiny_stylegan2, 2, 2)
    tiny_stylegan2.set_low_precision(min_resolution=0, min_channels=0)  # by default too narrow for bf16
    fp32 = frames_of(tiny_stylegan2, latents, noise="const")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = frames_of(tiny_stylegan2, latents, noise="const")
    assert bf16.dtype == torch.float32 and bf16.shape == fp32.shape
    error = (bf16 - fp32).abs().max().item()
    assert 0 < error < 0.1 * fp32.abs().max().item()


def test_safetensors_round_trip_and_recognition(tiny_stylegan2, tiny_stylegan2_checkpoint, tmp_path):
    assert StyleGAN2Generator.recognizes(tiny_stylegan2_checkpoint)
    assert infer_backbone_name(tiny_stylegan2_checkpoint) == "stylegan2"
    path = tiny_stylegan2.save_safetensors(tmp_path / "g.safetensors")
    meta = safetensors_metadata(path)
    assert meta["mocohd_backbone"] == "stylegan2"
    assert json.loads(meta["config"]) == tiny_stylegan2.export_config()
    assert StyleGAN2Generator.recognizes(path) and infer_backbone_name(path) == "stylegan2"
    again = load_backbone(None, path)
    latents = latents_for(tiny_stylegan2, 2, 2)
    assert torch.equal(frames_of(again, latents, noise="const"), frames_of(tiny_stylegan2, latents, noise="const"))
    assert torch.equal(again.mean_latent(), tiny_stylegan2.mean_latent())
    with pytest.raises(MocohdError, match="safetensors"):
        tiny_stylegan2.save_safetensors(tmp_path / "g.pt")


def test_convert_command_writes_a_loadable_safetensors(tiny_stylegan2_checkpoint, tmp_path):
    out = tmp_path / "converted.safetensors"
    result = runner.invoke(app, ["convert", str(tiny_stylegan2_checkpoint), "--out", str(out)])
    assert result.exit_code == 0, result.output
    meta = safetensors_metadata(out)
    assert meta["mocohd_backbone"] == "stylegan2" and meta["source_name"] == tiny_stylegan2_checkpoint.name
    converted = load_backbone(None, out)
    original = load_backbone("stylegan2", tiny_stylegan2_checkpoint)
    assert all(torch.equal(a, b) for a, b in zip(converted.state_dict().values(), original.state_dict().values()))
    bad = runner.invoke(app, ["convert", str(tiny_stylegan2_checkpoint), "--out", str(tmp_path / "x.bin")])
    assert bad.exit_code == 2 and "safetensors" in bad.output


class PickledObject:
    """Stands for any class a malicious pickle could name."""


def _other_architecture(path):
    model = make_tiny_stylegan2()
    state = model.state_dict()
    state["convs.1.conv.weight"] = torch.zeros(1, 32, 7, 3, 3)  # a layer that does not fit its neighbours
    torch.save({"g_ema": state}, path)


@pytest.mark.parametrize("case, expected", [
    ("not_a_checkpoint", "PyTorch file"),
    ("pickled_code", "PyTorch file"),
    ("no_g_ema", "g_ema"),
    ("other_architecture", "convs.1.conv.weight"),
    ("biggan_like", "g_ema"),
    ("tensor_not_dict", "dict"),
    ("foreign_safetensors", "not a StyleGAN2"),
])
def test_wrong_checkpoints_give_one_clear_error(case, expected, tmp_path):
    path = tmp_path / f"{case}.pt"
    if case == "not_a_checkpoint":
        path.write_bytes(b"this is not a checkpoint at all")
    elif case == "pickled_code":  # unpickling it would have to import and build an arbitrary class
        torch.save({"g_ema": make_tiny_stylegan2().state_dict(), "extra": PickledObject()}, path)
    elif case == "no_g_ema":
        torch.save({"g": {"x": torch.zeros(2)}, "d": {"y": torch.zeros(2)}}, path)
    elif case == "other_architecture":
        _other_architecture(path)
    elif case == "biggan_like":
        torch.save({"embeddings.weight": torch.zeros(4, 8), "generator.gen_z.weight_orig": torch.zeros(8, 8)}, path)
    elif case == "tensor_not_dict":
        torch.save(torch.zeros(3), path)
    else:
        from mocohd_cli.infra.files import write_safetensors

        path = write_safetensors(tmp_path / "other.safetensors", {"a": torch.zeros(2)}, {"mocohd_backbone": "biggan"})
    result = runner.invoke(app, ["convert", str(path), "--backbone", "stylegan2", "--out", str(tmp_path / "o.safetensors")])
    assert result.exit_code == 2, result.output
    assert str(path) in result.output and expected in result.output and "fix:" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "o.safetensors").exists()


def test_recognizes_only_stylegan2_files(tmp_path):
    state = make_tiny_stylegan2().state_dict()
    torch.save({"g_ema": state}, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    torch.save(state, tmp_path / "bare.pth")
    assert StyleGAN2Generator.recognizes(tmp_path / "legacy.pt")
    assert StyleGAN2Generator.recognizes(tmp_path / "bare.pth")
    assert StyleGAN2Generator.from_checkpoint(tmp_path / "legacy.pt").size == 32
    torch.save({"g": {"x": torch.zeros(2)}}, tmp_path / "other.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    assert not StyleGAN2Generator.recognizes(tmp_path / "other.pt")
    torch.save({"g_ema": {"x": torch.zeros(2)}}, tmp_path / "broken.pt")  # claims to be one: loading says what is wrong
    assert StyleGAN2Generator.recognizes(tmp_path / "broken.pt")
    assert not StyleGAN2Generator.recognizes(tmp_path / "junk.pt")
    assert not StyleGAN2Generator.recognizes(tmp_path)


def test_discriminator_loads_rosinality_names_and_scores_images():
    torch.manual_seed(0)
    d = Discriminator(32, channels={4: 16, 8: 16, 16: 12, 32: 8})
    state = d.state_dict()
    for key in ("convs.0.0.weight", "convs.0.1.bias", "convs.1.conv1.0.weight", "convs.1.conv2.0.kernel",
                "convs.1.conv2.1.weight", "convs.1.conv2.2.bias", "convs.1.skip.0.kernel", "convs.1.skip.1.weight",
                "final_conv.0.weight", "final_conv.1.bias", "final_linear.0.weight", "final_linear.1.bias"):
        assert key in state, key
    assert state["final_conv.0.weight"].shape == (16, 17, 3, 3) and state["final_linear.0.weight"].shape == (16, 256)
    again = Discriminator.from_state_dict(state)
    assert again.channels == d.channels
    images = torch.randn(6, 3, 32, 32, requires_grad=True)
    scores = again(images)
    assert scores.shape == (6, 1) and torch.allclose(scores, d(images))
    scores.sum().backward()
    assert images.grad.abs().sum() > 0
    with pytest.raises(MocohdError):
        Discriminator.from_state_dict({"x": torch.zeros(1)})


def test_minibatch_stddev_groups_like_rosinality():
    x = torch.randn(8, 6, 4, 4)
    group = 4
    std = x.view(group, -1, 1, 6, 4, 4)
    std = torch.sqrt(std.var(0, unbiased=False) + 1e-8).mean([2, 3, 4], keepdim=True).squeeze(2)
    expected = torch.cat([x, std.repeat(group, 1, 4, 4)], 1)
    assert torch.allclose(minibatch_stddev(x, group), expected, atol=1e-6)
    assert minibatch_stddev(torch.randn(6, 2, 4, 4), 4).shape == (6, 3, 4, 4)  # 6 is no multiple of 4: groups of 3


def test_convert_refuses_a_backbone_that_cannot_export(tmp_path):
    plugin = tmp_path / "plain_gan.py"
    plugin.write_text(
        "import torch\n"
        "from mocohd_cli.models.backbone import ImageGenerator\n\n"
        "class PlainGAN(ImageGenerator):\n"
        "    name, latent_dim, z_dim, resolution = 'plain', 4, 4, 8\n\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.weight = torch.nn.Parameter(torch.zeros(1))\n\n"
        "    @classmethod\n"
        "    def from_checkpoint(cls, path, **options):\n"
        "        return cls()\n")
    checkpoint = tmp_path / "plain.bin"
    checkpoint.write_bytes(b"weights")
    result = runner.invoke(app, ["convert", str(checkpoint), "--backbone", f"{plugin}:PlainGAN",
                                 "--out", str(tmp_path / "o.safetensors")])
    assert result.exit_code == 2 and "cannot export" in result.output and str(checkpoint) in result.output
