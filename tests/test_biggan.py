"""BigGAN backbone: pytorch-pretrained-BigGAN folders, checked against a direct computation."""
import json

import pytest
import torch
import torch.nn.functional as F

from mocohd_cli import MocohdError, discover_backbones, load_backbone
from mocohd_cli.models.backbone import infer_backbone_name
from mocohd_cli.data.labels import load_class_labels, resolve_classes
from mocohd_plugins.biggan import BigGANGenerator

# 4 -> 8 -> 8 -> 16 -> 16 px, attention before layer 2 (16 channels at 8 px), 3 truncation rows.
TINY = {
    "output_dim": 16, "z_dim": 8, "class_embed_dim": 8, "channel_width": 4, "num_classes": 5,
    "layers": [[True, 16, 8], [False, 8, 4], [True, 4, 2], [False, 2, 1]],
    "attention_layer_position": 2, "eps": 1e-4, "n_stats": 3,
}


def _sn_entries(prefix, shape, bias, gen):
    weight = torch.randn(shape, generator=gen) * 0.3
    u = F.normalize(torch.randn(shape[0], generator=gen), dim=0)
    for _ in range(2):  # a trained model's u, v are near (not at) the top singular vectors
        v = F.normalize(weight.flatten(1).t() @ u, dim=0)
        u = F.normalize(weight.flatten(1) @ v, dim=0)
    out = {prefix + "weight_orig": weight, prefix + "weight_u": u, prefix + "weight_v": v}
    if bias:
        out[prefix + "bias"] = torch.randn(shape[0], generator=gen) * 0.1
    return out


def _bn_entries(prefix, channels, cond_dim, n_stats, gen):
    out = {prefix + "running_means": torch.randn(n_stats, channels, generator=gen) * 0.2,
           prefix + "running_vars": torch.rand(n_stats, channels, generator=gen) + 0.5}
    if cond_dim:
        out.update(_sn_entries(prefix + "scale.", (channels, cond_dim), False, gen))
        out.update(_sn_entries(prefix + "offset.", (channels, cond_dim), False, gen))
    else:
        out[prefix + "weight"] = torch.rand(channels, generator=gen) + 0.5
        out[prefix + "bias"] = torch.randn(channels, generator=gen) * 0.1
    return out


def tiny_state_dict(config, seed=0):
    """Random weights keyed exactly as pytorch-pretrained-BigGAN's BigGAN.state_dict()."""
    gen = torch.Generator().manual_seed(seed)
    ch, zd, n = config["channel_width"], config["z_dim"], config["n_stats"]
    sd = {"embeddings.weight": torch.randn(zd, config["num_classes"], generator=gen)}
    sd.update(_sn_entries("generator.gen_z.", (4 * 4 * 16 * ch, 2 * zd), True, gen))
    index = 0
    for i, (_, cin, cout) in enumerate(config["layers"]):
        cin, cout = cin * ch, cout * ch
        if i == config["attention_layer_position"]:
            p = f"generator.layers.{index}."
            for name, o, c in (("theta", cin // 8, cin), ("phi", cin // 8, cin), ("g", cin // 2, cin),
                               ("o_conv", cin, cin // 2)):
                sd.update(_sn_entries(f"{p}snconv1x1_{name}.", (o, c, 1, 1), False, gen))
            sd[p + "gamma"] = torch.tensor([0.7])
            index += 1
        p, mid = f"generator.layers.{index}.", cin // 4
        for k, (a, b, ks) in enumerate([(cin, mid, 1), (mid, mid, 3), (mid, mid, 3), (mid, cout, 1)]):
            sd.update(_bn_entries(f"{p}bn_{k}.", a, 2 * zd, n, gen))
            sd.update(_sn_entries(f"{p}conv_{k}.", (b, a, ks, ks), True, gen))
        index += 1
    sd.update(_bn_entries("generator.bn.", ch, 0, n, gen))
    sd.update(_sn_entries("generator.conv_to_rgb.", (ch, ch, 3, 3), True, gen))
    return sd


# -- an independent, per-image computation of pytorch-pretrained-BigGAN's eval-mode forward ----
def ref_weight(sd, p):
    w = sd[p + "weight_orig"]
    return w / (sd[p + "weight_u"] @ (w.reshape(w.shape[0], -1) @ sd[p + "weight_v"]))


def ref_stats(sd, p, truncation, n_stats):
    position = truncation * (n_stats - 1)
    lo = int(position)
    frac = position - lo
    means, variances = sd[p + "running_means"], sd[p + "running_vars"]
    if frac == 0:
        return means[lo], variances[lo]
    # that code's blend: row lo weighted by frac, row lo+1 by (1 - frac)
    return means[lo] * frac + means[lo + 1] * (1 - frac), variances[lo] * frac + variances[lo + 1] * (1 - frac)


def ref_bn(sd, p, x, truncation, cfg, cond=None):
    mean, var = ref_stats(sd, p, truncation, cfg["n_stats"])
    x = (x - mean[:, None, None]) / torch.sqrt(var[:, None, None] + cfg["eps"])
    if cond is None:
        return x * sd[p + "weight"][:, None, None] + sd[p + "bias"][:, None, None]
    gain = 1 + ref_weight(sd, p + "scale.") @ cond
    return x * gain[:, None, None] + (ref_weight(sd, p + "offset.") @ cond)[:, None, None]


def ref_conv(sd, p, x):
    w = ref_weight(sd, p)
    return F.conv2d(x[None], w, sd.get(p + "bias"), padding=w.shape[-1] // 2)[0]


def ref_image(sd, cfg, z, class_vector, truncation):
    ch = cfg["channel_width"]
    cond = torch.cat([z, sd["embeddings.weight"] @ class_vector])
    x = ref_weight(sd, "generator.gen_z.") @ cond + sd["generator.gen_z.bias"]
    x = x.view(4, 4, 16 * ch).permute(2, 0, 1)
    index = 0
    for i, (up, cin, cout) in enumerate(cfg["layers"]):
        if i == cfg["attention_layer_position"]:
            p = f"generator.layers.{index}."
            c, h, w = x.shape
            theta = ref_conv(sd, p + "snconv1x1_theta.", x).reshape(c // 8, h * w)
            phi = F.max_pool2d(ref_conv(sd, p + "snconv1x1_phi.", x), 2).reshape(c // 8, -1)
            g = F.max_pool2d(ref_conv(sd, p + "snconv1x1_g.", x), 2).reshape(c // 2, -1)
            attn = torch.softmax(theta.t() @ phi, dim=-1)
            x = x + sd[p + "gamma"] * ref_conv(sd, p + "snconv1x1_o_conv.", (g @ attn.t()).reshape(c // 2, h, w))
            index += 1
        p, skip = f"generator.layers.{index}.", x
        for k in range(4):
            x = torch.relu(ref_bn(sd, f"{p}bn_{k}.", x, truncation, cfg, cond))
            if k == 1 and up:
                x = x.repeat_interleave(2, 1).repeat_interleave(2, 2)
            x = ref_conv(sd, f"{p}conv_{k}.", x)
        if cin != cout:
            skip = skip[: skip.shape[0] // 2]
        if up:
            skip = skip.repeat_interleave(2, 1).repeat_interleave(2, 2)
        x = x + skip
        index += 1
    x = torch.relu(ref_bn(sd, "generator.bn.", x, truncation, cfg))
    return torch.tanh(ref_conv(sd, "generator.conv_to_rgb.", x)[:3])


@pytest.fixture
def biggan_folder(tmp_path):
    folder = tmp_path / "biggan-tiny"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(TINY))
    state = tiny_state_dict(TINY)
    torch.save(state, folder / "pytorch_model.bin")
    return folder, state


@pytest.mark.parametrize("truncation", [1.0, 0.5, 0.7, 0.3])
def test_frames_match_direct_computation(biggan_folder, truncation):
    folder, state = biggan_folder
    model = load_backbone("biggan", folder, truncation=truncation)
    gen = torch.Generator().manual_seed(1)
    latents = torch.randn(2, 3, TINY["z_dim"], generator=gen)
    classes = torch.tensor([[0.0, 1, 0, 0, 0], [0.2, 0, 0, 0.8, 0]])  # one-hot and a soft class vector
    frames = model.synthesize(latents, condition=classes)
    assert frames.shape == (2, 3, 3, 16, 16)
    expected = torch.stack([torch.stack([ref_image(state, TINY, latents[b, t], classes[b], truncation)
                                         for t in range(3)]) for b in range(2)])
    torch.testing.assert_close(frames, expected, atol=2e-5, rtol=1e-4)


def test_truncation_selects_statistics_and_scales_content(biggan_folder):
    folder, _ = biggan_folder
    low = load_backbone("biggan", folder, truncation=0.4)
    high = load_backbone("biggan", folder, truncation=1.0)
    z = torch.randn(1, 2, 8)
    assert not torch.allclose(low.synthesize(z, condition=torch.tensor([2])),
                              high.synthesize(z, condition=torch.tensor([2])))
    codes = low.sample_latent(256, rng=torch.Generator().manual_seed(0))
    assert codes.abs().max() <= 2 * 0.4 + 1e-6 and codes.std() > 0.2  # truncated normal, times truncation
    again = low.sample_latent(256, rng=torch.Generator().manual_seed(0))
    assert torch.equal(codes, again)
    torch.testing.assert_close(low.mapping(z[0]), 0.4 * z[0])
    for bad in (0.0, 1.5):
        with pytest.raises(MocohdError, match=r"\(0, 1\]"):
            load_backbone("biggan", folder, truncation=bad)
    with pytest.raises(MocohdError, match="no load options"):
        BigGANGenerator.from_checkpoint(folder, truncation=0.5)


def test_class_is_fixed_per_video_and_indices_work(biggan_folder):
    folder, _ = biggan_folder
    model = BigGANGenerator.from_checkpoint(folder)
    z = torch.randn(1, 8).expand(2, 8)
    latents = torch.stack([z, z], dim=1)  # two videos, both frames the same z
    frames = model.synthesize(latents, condition=torch.tensor([1, 3]))
    torch.testing.assert_close(frames[:, 0], frames[:, 1])
    assert not torch.allclose(frames[0], frames[1])
    one_hot = model.sample_condition(2, [1, 3])
    torch.testing.assert_close(model.synthesize(latents, condition=one_hot), frames)
    with pytest.raises(MocohdError, match="out of range"):
        model.synthesize(latents, condition=torch.tensor([0, 5]))


def test_safetensors_round_trip_keeps_every_truncation(biggan_folder, tmp_path):
    folder, _ = biggan_folder
    model = load_backbone("biggan", folder, truncation=0.7)
    path = model.save_safetensors(tmp_path / "biggan.safetensors")
    assert infer_backbone_name(path) == "biggan" and infer_backbone_name(folder) == "biggan"
    assert infer_backbone_name(folder / "pytorch_model.bin") == "biggan"
    z, classes = torch.randn(2, 2, 8), torch.tensor([0, 4])
    for truncation in (0.7, 0.3):
        original = load_backbone("biggan", folder, truncation=truncation)
        reloaded = load_backbone(None, path, truncation=truncation)
        torch.testing.assert_close(reloaded.synthesize(z, condition=classes),
                                   original.synthesize(z, condition=classes), atol=0, rtol=0)
    exported = reloaded.save_pretrained(tmp_path / "exported")
    again = load_backbone("biggan", exported / "pytorch_model.bin", truncation=0.3)
    torch.testing.assert_close(again.synthesize(z, condition=classes), reloaded.synthesize(z, condition=classes))


def test_older_spectral_norm_files_without_v(tmp_path):
    """Files with only weight_u get v = normalize(W^T u); pre-1.0 files also stored the
    normalised `weight`, which must then be reproduced exactly."""
    state = tiny_state_dict(TINY)
    old_style, u_only = dict(state), dict(state)
    for key in [k for k in state if k.endswith("weight_v")]:
        prefix = key[: -len("weight_v")]
        del old_style[key], u_only[key]
        old_style[prefix + "weight"] = ref_weight(state, prefix)  # what that torch version saved
        w, u = state[prefix + "weight_orig"].flatten(1), state[prefix + "weight_u"]
        state[key] = F.normalize(w.t() @ u, dim=0)  # the u-only rule, spelled out
    (tmp_path / "config.json").write_text(json.dumps(TINY))
    z, classes = torch.randn(1, 2, 8), torch.tensor([1])
    outputs = {}
    for name, weights in (("u_only.bin", u_only), ("old.bin", old_style), ("rule.bin", state)):
        torch.save(weights, tmp_path / name)
        outputs[name] = BigGANGenerator.from_checkpoint(tmp_path / name).synthesize(z, condition=classes)
    torch.testing.assert_close(outputs["u_only.bin"], outputs["rule.bin"])
    reference = torch.stack([ref_image(tiny_state_dict(TINY), TINY, z[0, t], torch.eye(5)[1], 1.0) for t in range(2)])
    torch.testing.assert_close(outputs["old.bin"][0], reference, atol=2e-5, rtol=1e-4)


def test_bad_checkpoints_give_clear_errors(biggan_folder, tmp_path):
    folder, state = biggan_folder
    with pytest.raises(MocohdError, match="config.json and pytorch_model.bin"):
        BigGANGenerator.from_checkpoint(tmp_path)
    (folder / "config.json").write_text(json.dumps({**TINY, "channel_width": 8}))
    with pytest.raises(MocohdError, match="do not fit the BigGAN config") as info:
        BigGANGenerator.from_checkpoint(folder)
    assert "wrong shape" in str(info.value)
    (folder / "config.json").write_text(json.dumps({**TINY, "output_dim": 32}))
    with pytest.raises(MocohdError, match="produce 16 px"):
        BigGANGenerator.from_checkpoint(folder)
    (folder / "config.json").write_text(json.dumps({**TINY, "colour": 1}))
    with pytest.raises(MocohdError, match="unknown BigGAN config field"):
        BigGANGenerator.from_checkpoint(folder)
    (folder / "config.json").write_text(json.dumps(TINY))
    with pytest.raises(MocohdError, match="load option"):
        BigGANGenerator.from_checkpoint(folder, psi=0.5)


def test_frozen_but_differentiable_and_registered(biggan_folder):
    folder, _ = biggan_folder
    assert discover_backbones()["biggan"].cls is BigGANGenerator
    model = load_backbone("biggan", folder, truncation=0.5)
    assert model.latent_dim == model.z_dim == 8 and model.resolution == 16 and model.condition_dim == 5
    assert model.checkpoint_sha256 and not any(p.requires_grad for p in model.parameters())
    latents = torch.randn(1, 2, 8, requires_grad=True)
    model.synthesize(latents, condition=torch.tensor([2])).sum().backward()
    assert latents.grad is not None and latents.grad.abs().sum() > 0


def test_class_labels_from_text_and_json(tmp_path):
    text = tmp_path / "labels.txt"
    text.write_text("tench, Tinca tinca\ngoldfish\ncrane\nGolden  Retriever\ncrane, construction crane\n")
    labels = load_class_labels(text)
    assert labels["tinca tinca"] == 0 and labels["golden retriever"] == 3 and labels["crane"] == -1
    assert resolve_classes(["Golden retriever", "1", "tench"], text, num_classes=5) == [3, 1, 0]
    with pytest.raises(MocohdError, match="several classes"):
        resolve_classes(["crane"], text)
    with pytest.raises(MocohdError, match="unknown class name"):
        resolve_classes(["goldfsh"], text)
    with pytest.raises(MocohdError, match="no labels file"):
        resolve_classes(["goldfish"])
    with pytest.raises(MocohdError, match="out of range"):
        resolve_classes(["7"], num_classes=5)
    as_list, as_map = tmp_path / "a.json", tmp_path / "b.json"
    as_list.write_text(json.dumps(["cat", ["dog", "puppy"]]))
    as_map.write_text(json.dumps({"cat": 0, "dog": 1}))
    assert load_class_labels(as_list) == {"cat": 0, "dog": 1, "puppy": 1}
    assert load_class_labels(as_map) == {"cat": 0, "dog": 1}
    assert resolve_classes(None) is None


def test_train_and_sample_videos_with_classes(biggan_folder, tmp_path, monkeypatch):
    """The whole pipeline on BigGAN: PCA in z, a short training run, class-conditional videos."""
    from mocohd_cli.data.domains import make_dataset
    from mocohd_cli.models.motion import load_motion
    from mocohd_cli.models.generation import generate_videos
    from mocohd_cli.training import TrainConfig, train

    folder, _ = biggan_folder
    monkeypatch.setenv("MOCOHD_CACHE", str(tmp_path / "cache"))
    data = make_dataset("sky", tmp_path / "videos", videos=2, frames=8, size=16, seed=0)
    backbone = load_backbone("biggan", folder, truncation=0.5)
    config = TrainConfig(backbone="biggan", checkpoint=str(folder), data=str(data), out=str(tmp_path / "run"),
                         frames=4, video_frame_size=16, batch_size=2, h_dim=8, n_pca=8, d_channels=4,
                         pca_samples=256, workers=0, num_samples=0, iterations=1, g_steps=1, device="cpu")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = train(config, backbone=backbone, progress=False)
    finally:
        torch.set_num_threads(threads)
    motion = load_motion(result.motion_path, backbone)
    videos = generate_videos(backbone, motion, num_videos=3, n_frames=4, seed=1, classes=[4, 0])
    assert videos.shape == (3, 4, 3, 16, 16)
    again = generate_videos(backbone, motion, num_videos=3, n_frames=4, seed=1, classes=[4, 0])
    torch.testing.assert_close(videos, again)
    other_class = generate_videos(backbone, motion, num_videos=3, n_frames=4, seed=1, classes=[1, 2])
    assert not torch.allclose(videos, other_class)
