"""NVIDIA StyleGAN2-ADA pickles: read without running code, converted to the stylegan2 backbone.

The test writes a pickle the way NVIDIA's code does: every network module is stored through
`torch_utils.persistence._reconstruct_persistent_obj(meta)` with its module source, class name
and instance __dict__; tensors go through torch's own pickling. The modules below are an
independent implementation of NVIDIA's layer math (training/networks.py, generic reference
path: zero-insertion up-sampling, FIR filter, convolution), used as the golden reference.
"""
import builtins
import math
import os
import pickle
import sys
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mocohd_cli import MocohdError, load_backbone
from mocohd_cli.models.backbone import infer_backbone_name
from mocohd_cli.infra.safe_pickle import RestrictedUnpickler, UnsafePickleError
from mocohd_plugins.stylegan2.nvidia import convert_stylegan2, load_nvidia_pickle, read_nvidia_stylegan2
from mocohd_plugins.stylegan2 import StyleGAN2Generator


def _reconstruct_persistent_obj(meta):  # only named in the pickle; the reader never calls it
    raise AssertionError("NVIDIA's reconstruct hook must never run")


class EasyDict(dict):
    pass


@pytest.fixture
def nvidia_modules(monkeypatch):
    """Importable torch_utils.persistence and dnnlib.util, so pickle can name their globals."""
    persistence = types.ModuleType("torch_utils.persistence")
    persistence._reconstruct_persistent_obj = _reconstruct_persistent_obj
    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    util = types.ModuleType("dnnlib.util")
    util.EasyDict = EasyDict
    EasyDict.__module__ = "dnnlib.util"
    for name, module in (("torch_utils", types.ModuleType("torch_utils")), ("torch_utils.persistence", persistence),
                         ("dnnlib", types.ModuleType("dnnlib")), ("dnnlib.util", util)):
        monkeypatch.setitem(sys.modules, name, module)


class Persistent(nn.Module):
    """Pickles like a @persistence.persistent_class module: source + class name + __dict__."""

    module_src = "import os\nos.system('touch {marker}')\n"  # would leave a file behind if executed
    marker = "never-created"

    def __reduce__(self):
        meta = dict(type="class", version=6, module_src=self.module_src.format(marker=Persistent.marker),
                    class_name=type(self).__name__, state=dict(self.__dict__))
        return (_reconstruct_persistent_obj, (meta,))


def fir_filter(taps=(1, 3, 3, 1)):
    f = torch.tensor(taps, dtype=torch.float32)
    f = torch.outer(f, f)
    return f / f.sum()


def upfirdn2d(x, f, up=1, pad=(0, 0, 0, 0), gain=1.0):
    """NVIDIA's reference: insert zeros, pad, convolve with the (flipped) filter * gain."""
    n, c, h, w = x.shape
    if up > 1:
        y = x.new_zeros(n, c, h * up, w * up)
        y[:, :, ::up, ::up] = x
        x = y
    x = F.pad(x, list(pad))
    kernel = (f * gain).flip([0, 1])[None, None].repeat(c, 1, 1, 1)
    return F.conv2d(x, kernel, groups=c)


def lrelu(x, gain=math.sqrt(2)):
    return F.leaky_relu(x, 0.2) * gain


class FullyConnectedLayer(Persistent):
    def __init__(self, in_features, out_features, activation="linear", lr_multiplier=1.0, bias_init=0.0):
        super().__init__()
        self.activation = activation
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(bias_init + 0.1 * torch.randn(out_features))
        self.weight_gain = lr_multiplier / np.sqrt(in_features)  # a numpy float64, as in NVIDIA's code
        self.bias_gain = lr_multiplier

    def forward(self, x):
        x = x @ (self.weight * float(self.weight_gain)).t() + self.bias * self.bias_gain
        return lrelu(x) if self.activation == "lrelu" else x


class MappingNetwork(Persistent):
    def __init__(self, z_dim, c_dim, w_dim, num_ws, num_layers=8, lr_multiplier=0.01):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_ws, self.num_layers = z_dim, c_dim, w_dim, num_ws, num_layers
        self.w_avg_beta = 0.995
        for idx in range(num_layers):
            setattr(self, f"fc{idx}", FullyConnectedLayer(w_dim, w_dim, "lrelu", lr_multiplier))
        self.register_buffer("w_avg", torch.randn(w_dim))

    def forward(self, z, truncation_psi=1.0):
        x = z * (z.square().mean(dim=1, keepdim=True) + 1e-8).rsqrt()
        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)
        return self.w_avg.lerp(x, truncation_psi) if truncation_psi != 1 else x


class SynthesisLayer(Persistent):
    def __init__(self, in_channels, out_channels, w_dim, resolution, up=1):
        super().__init__()
        self.resolution, self.up, self.use_noise, self.activation = resolution, up, True, "lrelu"
        self.conv_clamp = None
        self.register_buffer("resample_filter", fir_filter())
        self.padding = 1
        self.act_gain = math.sqrt(2)
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 3, 3))
        self.register_buffer("noise_const", torch.randn(resolution, resolution))
        self.noise_strength = nn.Parameter(torch.tensor(0.3))
        self.bias = nn.Parameter(0.1 * torch.randn(out_channels))

    def forward(self, x, w, noise_mode):
        styles = self.affine(w)
        weight = self.weight[None] * styles[:, None, :, None, None]  # no weight gain: demodulated
        weight = weight * (weight.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()[:, :, None, None, None]
        out = []
        for xi, wi in zip(x, weight):  # one image at a time: the plain definition
            xi = xi[None]
            if self.up == 2:  # conv2d_resample's generic path, flip_weight=False (true convolution)
                xi = upfirdn2d(xi, self.resample_filter, up=2, pad=(3, 2, 3, 2), gain=4.0)
                out.append(F.conv2d(xi, wi.flip([2, 3])))
            else:
                out.append(F.conv2d(xi, wi, padding=1))
        x = torch.cat(out)
        if noise_mode == "const":
            x = x + self.noise_const * self.noise_strength
        return lrelu(x + self.bias[None, :, None, None], self.act_gain)


class ToRGBLayer(Persistent):
    def __init__(self, in_channels, out_channels, w_dim):
        super().__init__()
        self.conv_clamp = None
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 1, 1))
        self.bias = nn.Parameter(0.1 * torch.randn(out_channels))
        self.weight_gain = 1 / np.sqrt(in_channels)

    def forward(self, x, w):
        styles = self.affine(w) * float(self.weight_gain)
        weight = self.weight[None, :, :, 0, 0] * styles[:, None, :]  # [N, 3, C], not demodulated
        return torch.einsum("nchw,noc->nohw", x, weight) + self.bias[None, :, None, None]


class SynthesisBlock(Persistent):
    def __init__(self, in_channels, out_channels, w_dim, resolution, img_channels, is_last, architecture="skip"):
        super().__init__()
        self.in_channels, self.w_dim, self.resolution = in_channels, w_dim, resolution
        self.img_channels, self.is_last, self.architecture = img_channels, is_last, architecture
        self.register_buffer("resample_filter", fir_filter())
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn(out_channels, resolution, resolution))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=2)
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution)
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim)

    def forward(self, x, img, w, noise_mode):
        if self.in_channels == 0:
            x = self.const[None].repeat(w.shape[0], 1, 1, 1)
        else:
            x = self.conv0(x, w, noise_mode)
        x = self.conv1(x, w, noise_mode)
        y = self.torgb(x, w)
        if img is not None:
            img = upfirdn2d(img, self.resample_filter, up=2, pad=(2, 1, 2, 1), gain=4.0)
        return x, y if img is None else img + y


class SynthesisNetwork(Persistent):
    def __init__(self, w_dim, img_resolution, img_channels, channel_base, channel_max):
        super().__init__()
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        self.block_resolutions = [2 ** i for i in range(2, int(math.log2(img_resolution)) + 1)]
        widths = {res: min(channel_base // res, channel_max) for res in self.block_resolutions}
        for res in self.block_resolutions:
            block = SynthesisBlock(widths[res // 2] if res > 4 else 0, widths[res], w_dim, res, img_channels,
                                   is_last=res == img_resolution)
            setattr(self, f"b{res}", block)

    def forward(self, w, noise_mode):
        x = img = None
        for res in self.block_resolutions:
            x, img = getattr(self, f"b{res}")(x, img, w, noise_mode)
        return img


class Generator(Persistent):
    def __init__(self, z_dim, c_dim, w_dim, img_resolution, img_channels, mapping_kwargs, synthesis_kwargs):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.synthesis = SynthesisNetwork(w_dim, img_resolution, img_channels, **synthesis_kwargs)
        self.num_ws = 2 * int(math.log2(img_resolution)) - 2
        self.mapping = MappingNetwork(z_dim, c_dim, w_dim, self.num_ws, **mapping_kwargs)
        self._init_args = ()
        self._init_kwargs = dict(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, img_resolution=img_resolution,
                                 img_channels=img_channels, mapping_kwargs=EasyDict(mapping_kwargs),
                                 synthesis_kwargs=EasyDict(synthesis_kwargs))

    def forward(self, z, noise_mode="const", truncation_psi=1.0):
        return self.synthesis(self.mapping(z, truncation_psi), noise_mode)


def tiny_nvidia_generator(seed=0):
    torch.manual_seed(seed)
    return Generator(z_dim=16, c_dim=0, w_dim=16, img_resolution=16, img_channels=3,
                     mapping_kwargs={"num_layers": 2, "lr_multiplier": 0.01},
                     synthesis_kwargs={"channel_base": 128, "channel_max": 16}).eval()


def write_snapshot(path, payload):
    with open(path, "wb") as handle:
        pickle.dump(payload, handle)
    return path


@pytest.fixture
def snapshot(nvidia_modules, tmp_path, monkeypatch):
    monkeypatch.setattr(Persistent, "marker", str(tmp_path / "EXECUTED"))
    g_ema = tiny_nvidia_generator()
    payload = {"G": tiny_nvidia_generator(seed=1), "D": None, "G_ema": g_ema, "augment_pipe": None,
               "training_set_kwargs": EasyDict(resolution=16, use_labels=False)}
    return write_snapshot(tmp_path / "network-snapshot-000100.pkl", payload), g_ema


@pytest.mark.parametrize("noise", ["const", "none"])
def test_converted_generator_matches_nvidia_layer_math(snapshot, noise):
    path, g_ema = snapshot
    model = load_backbone(None, path)  # inferred as stylegan2 from the pickle
    assert model.name == "stylegan2" and model.resolution == 16 and model.latent_dim == 16
    z = torch.randn(3, 16, generator=torch.Generator().manual_seed(0))
    w = model.mapping(z)
    with torch.no_grad():
        torch.testing.assert_close(w, g_ema.mapping(z), atol=1e-5, rtol=1e-5)
        if noise == "none":
            for layer in g_ema.modules():
                if isinstance(layer, SynthesisLayer):
                    layer.noise_strength.zero_()
        expected = g_ema.synthesis(g_ema.mapping(z), "const")
        frames = model.synthesize(w[:, None], noise=noise)
    assert frames.shape == (3, 1, 3, 16, 16)
    assert expected.abs().max() < 20 and expected.std() > 0.05  # a non-degenerate comparison
    torch.testing.assert_close(frames[:, 0], expected, atol=1e-4, rtol=1e-4)
    assert not (path.parent / "EXECUTED").exists()  # the embedded module source never ran


def test_w_avg_becomes_latent_avg_for_truncation(snapshot):
    path, g_ema = snapshot
    model = StyleGAN2Generator.from_checkpoint(path)
    torch.testing.assert_close(model.latent_avg, g_ema.mapping.w_avg)
    assert model.latent_avg_source == "checkpoint"
    z = torch.randn(2, 16)
    with torch.no_grad():
        model.truncation = 0.5
        torch.testing.assert_close(model.mapping(z), g_ema.mapping(z, 0.5), atol=1e-5, rtol=1e-5)


def test_records_keep_init_kwargs_and_tensors_without_code(snapshot):
    path, g_ema = snapshot
    top = load_nvidia_pickle(path)
    assert set(top) == {"G", "D", "G_ema", "augment_pipe", "training_set_kwargs"}
    record = top["G_ema"]
    assert record.class_name == "Generator" and record.source_chars > 0
    assert record.init_kwargs["synthesis_kwargs"] == {"channel_base": 128, "channel_max": 16}
    assert record.child("mapping").attr("num_layers") == 2
    torch.testing.assert_close(record.tensors()["synthesis.b8.conv0.weight"], g_ema.synthesis.b8.conv0.weight.detach())
    converted = read_nvidia_stylegan2(path)
    assert converted.config["channels"] == {4: 16, 8: 16, 16: 8} and converted.config["n_mlp"] == 2
    assert converted.config["lr_mlp"] == pytest.approx(0.01)
    assert converted.config["blur_kernel"] == pytest.approx([0.125, 0.375, 0.375, 0.125])
    assert converted.info["mapping_kwargs"] == {"num_layers": 2, "lr_multiplier": 0.01}
    assert converted.info["notes"] == []
    record.child("synthesis").child("b16").child("conv1").state["conv_clamp"] = 256
    assert convert_stylegan2(record).info["notes"] == ["conv_clamp=256 (activation clipping) is not reproduced"]


def test_convert_to_safetensors_keeps_the_network(snapshot, tmp_path):
    from typer.testing import CliRunner

    from mocohd_cli.cli import app

    path, _ = snapshot
    out = tmp_path / "converted.safetensors"
    result = CliRunner().invoke(app, ["convert", str(path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert infer_backbone_name(out) == "stylegan2"
    direct, reloaded = StyleGAN2Generator.from_checkpoint(path), StyleGAN2Generator.from_checkpoint(out)
    w = torch.randn(2, 1, 16)
    with torch.no_grad():
        torch.testing.assert_close(reloaded.synthesize(w, noise="const"), direct.synthesize(w, noise="const"))
    torch.testing.assert_close(reloaded.latent_avg, direct.latent_avg)


class RunsCode:
    def __init__(self, func, arg):
        self.func, self.arg = func, arg

    def __reduce__(self):
        return (self.func, (self.arg,))


@pytest.mark.parametrize("func, name", [(os.system, "system"), (builtins.eval, "builtins.eval"),
                                        (builtins.exec, "builtins.exec")])
def test_pickles_that_run_code_are_refused(nvidia_modules, tmp_path, func, name):
    marker = tmp_path / "PWNED"
    arg = f"touch {marker}" if func is os.system else f"open({str(marker)!r}, 'w').close()"
    g = tiny_nvidia_generator()
    g.mapping.fc0._parameters["weight"] = RunsCode(func, arg)  # hidden deep inside the network
    path = write_snapshot(tmp_path / "evil.pkl", {"G_ema": g})
    with pytest.raises(UnsafePickleError, match=f"refusing to load .*{name}") as info:
        StyleGAN2Generator.from_checkpoint(path)
    assert str(path) in str(info.value) and "nothing from this file was executed" in str(info.value)
    assert not marker.exists()
    with pytest.raises(MocohdError, match="refusing"):
        load_backbone("stylegan2", path)


def test_unknown_classes_and_wrong_networks_are_refused(nvidia_modules, tmp_path):
    path = write_snapshot(tmp_path / "other.pkl", {"G_ema": types.SimpleNamespace(a=1)})
    with pytest.raises(UnsafePickleError, match="types.SimpleNamespace"):
        read_nvidia_stylegan2(path)
    conditional = tiny_nvidia_generator()
    conditional.c_dim = 10
    with pytest.raises(MocohdError, match="class-conditional"):
        read_nvidia_stylegan2(write_snapshot(tmp_path / "cond.pkl", {"G_ema": conditional}))
    resnet = tiny_nvidia_generator()
    resnet.synthesis.b8.architecture = "resnet"
    with pytest.raises(MocohdError, match="only 'skip'"):
        read_nvidia_stylegan2(write_snapshot(tmp_path / "resnet.pkl", {"G_ema": resnet}))
    sg3 = tiny_nvidia_generator()
    sg3.synthesis.input = FullyConnectedLayer(2, 2)
    with pytest.raises(MocohdError, match="StyleGAN3"):
        read_nvidia_stylegan2(write_snapshot(tmp_path / "sg3.pkl", {"G_ema": sg3}))
    with pytest.raises(MocohdError, match="no 'G_ema'"):
        read_nvidia_stylegan2(write_snapshot(tmp_path / "d.pkl", {"D": None}))
    garbage = tmp_path / "garbage.pkl"
    garbage.write_bytes(b"not a pickle at all")
    with pytest.raises(MocohdError, match="not a well-formed pickle"):
        read_nvidia_stylegan2(garbage)


def test_tensors_rebuild_from_raw_storages():
    """dtypes, views, offsets and parameters come back exactly, with torch never unpickling."""
    import io

    base = torch.randn(4, 5)
    payload = {"t": base.t(), "row": base[2], "half": torch.randn(3).half(), "long": torch.arange(6).view(2, 3),
               "bool": torch.tensor([True, False]), "param": nn.Parameter(torch.ones(2, 2)), "empty": torch.zeros(0),
               "scalar": np.float64(0.25), "shape": torch.Size([2, 3])}
    loaded = RestrictedUnpickler(io.BytesIO(pickle.dumps(payload))).load()
    for key in ("t", "row", "half", "long", "bool", "empty"):
        assert loaded[key].dtype == payload[key].dtype and torch.equal(loaded[key], payload[key]), key
    assert torch.equal(loaded["param"], torch.ones(2, 2)) and type(loaded["param"]) is torch.Tensor
    assert loaded["scalar"] == 0.25 and tuple(loaded["shape"]) == (2, 3)
