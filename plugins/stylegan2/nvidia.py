"""NVIDIA StyleGAN2-ADA / StyleGAN3 pickles (StyleGAN2 configurations) -> the stylegan2 backbone.

The pickle is read by the core's restricted unpickler (mocohd_cli/infra/safe_pickle.py): every
`torch_utils.persistence` module becomes an inert `PersistentRecord` (class name + state; the
module source embedded in the pickle is never executed), tensors are rebuilt from the raw
storage bytes, and anything that could run code stops the load.

`convert_stylegan2(record)` turns the `G_ema` record into the rosinality layout the stylegan2
backbone loads (see plugins/stylegan2):

    mapping.fcN                     -> style.{N+1}                  (same equalised-lr convention)
    synthesis.b4.const              -> input.input
    synthesis.b4.conv1 / .torgb     -> conv1 / to_rgb1, noises.noise_0
    synthesis.b{2^k}.conv0 / .conv1 -> convs.{2(k-3)} / convs.{2(k-3)+1}, noises.noise_{2(k-3)+1, +2}
    synthesis.b{2^k}.torgb          -> to_rgbs.{k-3}
    SynthesisLayer affine / bias / noise_strength / noise_const
                                    -> conv.modulation / activate.bias / noise.weight / noises.*
    mapping.w_avg                   -> latent_avg

Conventions that differ: NVIDIA applies no 1/sqrt(fan_in) gain to demodulated conv weights
(demodulation makes it irrelevant) while rosinality multiplies by it before demodulating, so
those weights are stored times sqrt(fan_in) to give bit-for-bit the same demodulated kernel.
The up-sampling conv is a stride-2 transposed conv followed by the [1,3,3,1] FIR (gain 4) in
both; NVIDIA stores the normalised 2-D filter, rosinality the 1-D taps, recovered here.
Not reproduced: `conv_clamp` (the ADA configs clip activations at +-256 to keep fp16 in
range; the backbone runs fp32 and does not clip) -- listed in `ConvertedGenerator.info["notes"]`.
"""
from __future__ import annotations

from dataclasses import dataclass
import math
from pathlib import Path
import re

import numpy as np
import torch
from torch import Tensor

from mocohd_cli.plugin_api import (MocohdError, PersistentRecord, RestrictedUnpickler, UnsafePickleError, brief_keys,
                                   looks_like_persistence_pickle, restricted_load)
from mocohd_plugins.stylegan2.layers import fir_kernel

NOT_NVIDIA_FIX = "pass a network-snapshot-*.pkl written by NVIDIA's stylegan2-ada-pytorch or stylegan3 code"
# RestrictedUnpickler and UnsafePickleError are re-exported: the readers of this module's pickles see them here.
__all__ = ["ConvertedGenerator", "PersistentRecord", "RestrictedUnpickler", "UnsafePickleError", "convert_stylegan2",
           "load_nvidia_pickle", "looks_like_nvidia_pickle", "read_nvidia_stylegan2"]


def load_nvidia_pickle(path: str | Path) -> object:
    """The pickle's top-level object (a dict with 'G', 'D', 'G_ema', ...), with inert records."""
    return restricted_load(path, what="NVIDIA network pickle", fix=NOT_NVIDIA_FIX)


def looks_like_nvidia_pickle(path: str | Path) -> bool:
    """Cheap check: a pickle whose first megabyte names torch_utils.persistence."""
    return looks_like_persistence_pickle(path)


# -- G_ema -> rosinality layout ---------------------------------------------------------------
@dataclass
class ConvertedGenerator:
    state_dict: dict[str, Tensor]  # rosinality/stylegan2-pytorch Generator keys
    config: dict  # keyword arguments of StyleGAN2Generator
    latent_avg: Tensor | None  # NVIDIA's w_avg
    info: dict  # NVIDIA's init kwargs (JSON-safe) and notes on what is not reproduced


def _filter_taps(resample_filter: Tensor, where: str, path: Path | None) -> list[float]:
    """1-D taps of NVIDIA's normalised separable filter ([k] or outer product [k, k])."""
    f = resample_filter.double()
    taps = f / f.sum() if f.ndim == 1 else f.sum(dim=1)
    if f.ndim == 2 and not torch.allclose(torch.outer(taps, taps), f, atol=1e-6):
        raise MocohdError(f"{where}: resample filter is not separable", path=path, fix="only separable FIR filters convert")
    return [float(t) for t in taps]


def _json_safe(value):
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.generic,)):
        return value.item()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return repr(value)


def _generator_record(obj: object, path: Path | None) -> PersistentRecord:
    if isinstance(obj, PersistentRecord):
        return obj
    if isinstance(obj, dict):
        for key in ("G_ema", "G"):
            if isinstance(obj.get(key), PersistentRecord):
                return obj[key]
        raise MocohdError(f"no 'G_ema' generator in this pickle (its keys: {brief_keys(obj)})", path=path, fix=NOT_NVIDIA_FIX)
    raise MocohdError(f"this pickle holds a {type(obj).__name__}, not an NVIDIA network snapshot",
                      path=path, fix=NOT_NVIDIA_FIX)


def convert_stylegan2(generator: PersistentRecord, path: Path | None = None) -> ConvertedGenerator:
    """NVIDIA StyleGAN2 `Generator` record -> rosinality state dict, config and latent_avg."""
    def refuse(message: str, fix: str = NOT_NVIDIA_FIX) -> MocohdError:
        return MocohdError(message, path=path, fix=fix)

    if generator.class_name != "Generator":
        raise refuse(f"G_ema is a {generator.class_name!r}, not a StyleGAN2 Generator")
    try:
        mapping, synthesis = generator.child("mapping"), generator.child("synthesis")
    except KeyError as exc:
        raise refuse(f"the generator has no {exc.args[0]!r} network") from exc
    blocks = {int(m.group(1)): block for name, block in synthesis.children.items()
              if (m := re.fullmatch(r"b(\d+)", name))}
    if not blocks or "input" in synthesis.children:
        raise refuse("this is a StyleGAN3 (alias-free) generator, which has no StyleGAN2 equivalent",
                     fix="convert a pickle trained with --cfg=stylegan2 (or a StyleGAN2-ADA pickle)")
    z_dim, w_dim = int(generator.attr("z_dim", 0)), int(generator.attr("w_dim", 0))
    c_dim, channels = int(generator.attr("c_dim", 0)), int(generator.attr("img_channels", 3))
    if c_dim:
        raise refuse(f"the generator is class-conditional (c_dim={c_dim}); the stylegan2 backbone is unconditional",
                     fix="use an unconditional snapshot")
    if channels != 3:
        raise refuse(f"the generator makes {channels}-channel images; only RGB converts")
    if z_dim != w_dim:
        raise refuse(f"z_dim ({z_dim}) differs from w_dim ({w_dim}); rosinality's layout needs them equal")

    state: dict[str, Tensor] = {}
    fcs = sorted(int(m.group(1)) for name in mapping.children if (m := re.fullmatch(r"fc(\d+)", name)))
    if fcs != list(range(len(fcs))) or not fcs:
        raise refuse(f"unexpected mapping layers {fcs}")
    lr_mul = None
    for index in fcs:
        fc = mapping.child(f"fc{index}")
        weight = fc.tensor("weight")
        if tuple(weight.shape) != (w_dim, w_dim):
            raise refuse(f"mapping.fc{index} is {tuple(weight.shape)}; rosinality's layout needs {w_dim}x{w_dim} layers")
        if fc.attr("activation", "lrelu") != "lrelu":
            raise refuse(f"mapping activation {fc.attr('activation')!r} is not lrelu")
        gain = float(fc.attr("bias_gain", 0.01))
        if lr_mul is not None and not math.isclose(gain, lr_mul):
            raise refuse("the mapping layers use different learning-rate multipliers")
        lr_mul = gain
        # Same equalised-lr convention (weight * lr/sqrt(in), bias * lr): copied as they are.
        state[f"style.{index + 1}.weight"] = weight
        state[f"style.{index + 1}.bias"] = fc.tensor("bias")

    resolution = int(generator.attr("img_resolution", max(blocks)))
    expected = [2 ** k for k in range(2, int(math.log2(resolution)) + 1)]
    if sorted(blocks) != expected:
        raise refuse(f"synthesis blocks {sorted(blocks)} do not run 4..{resolution}")
    taps: list[float] | None = None
    clamps: set[float] = set()
    noise_index = 0

    def modulated(layer: PersistentRecord, prefix: str, where: str) -> None:
        nonlocal noise_index, taps
        if layer.attr("activation", "lrelu") != "lrelu":
            raise refuse(f"{where}: activation {layer.attr('activation')!r} is not lrelu")
        weight = layer.tensor("weight")
        if weight.shape[-1] != 3:
            raise refuse(f"{where}: kernel size {weight.shape[-1]} (rosinality's layout has 3x3 convs)")
        if layer.attr("conv_clamp") is not None:
            clamps.add(float(layer.attr("conv_clamp")))
        layer_taps = _filter_taps(layer.tensor("resample_filter"), where, path)
        if taps is not None and not np.allclose(layer_taps, taps):
            raise refuse(f"{where}: a different resample filter from the other layers")
        taps = layer_taps
        fan_in = weight.shape[1] * weight.shape[2] * weight.shape[3]
        state[f"{prefix}.conv.weight"] = (weight * math.sqrt(fan_in))[None]  # see the module docstring
        state[f"{prefix}.conv.modulation.weight"] = layer.child("affine").tensor("weight")
        state[f"{prefix}.conv.modulation.bias"] = layer.child("affine").tensor("bias")
        state[f"{prefix}.activate.bias"] = layer.tensor("bias")
        side = int(layer.attr("resolution", 0)) or None
        if "noise_const" in layer.buffers:
            state[f"{prefix}.noise.weight"] = layer.tensor("noise_strength").reshape(1)
            state[f"noises.noise_{noise_index}"] = layer.tensor("noise_const")[None, None]
        else:  # use_noise=False: a zero noise strength is the same network
            state[f"{prefix}.noise.weight"] = torch.zeros(1)
            state[f"noises.noise_{noise_index}"] = torch.zeros(1, 1, side, side)
        noise_index += 1

    def to_rgb(layer: PersistentRecord, prefix: str) -> None:
        state[f"{prefix}.conv.weight"] = layer.tensor("weight")[None]
        state[f"{prefix}.conv.modulation.weight"] = layer.child("affine").tensor("weight")
        state[f"{prefix}.conv.modulation.bias"] = layer.child("affine").tensor("bias")
        state[f"{prefix}.bias"] = layer.tensor("bias").reshape(1, -1, 1, 1)

    widths = {}
    for res in expected:
        block = blocks[res]
        where = f"synthesis.b{res}"
        if block.attr("architecture", "skip") != "skip":
            raise refuse(f"{where} uses the {block.attr('architecture')!r} architecture; only 'skip' "
                         "(the StyleGAN2 default generator) converts")
        try:
            if res == 4:
                const = block.tensor("const")
                widths[4] = const.shape[0]
                state["input.input"] = const[None]
                modulated(block.child("conv1"), "conv1", where + ".conv1")
                to_rgb(block.child("torgb"), "to_rgb1")
            else:
                i = int(math.log2(res)) - 3
                widths[res] = block.child("conv1").tensor("weight").shape[0]
                modulated(block.child("conv0"), f"convs.{2 * i}", where + ".conv0")
                modulated(block.child("conv1"), f"convs.{2 * i + 1}", where + ".conv1")
                to_rgb(block.child("torgb"), f"to_rgbs.{i}")
                # The image skip is up-sampled with the block's filter; rosinality uses one filter.
                if not np.allclose(_filter_taps(block.tensor("resample_filter"), where, path), taps):
                    raise refuse(f"{where}: the skip up-sampling filter differs from the convolutions' filter")
        except KeyError as exc:
            raise refuse(f"{where} has no {exc.args[0]!r}") from exc

    blur = fir_kernel(taps, gain=4.0)
    for i in range(len(expected) - 1):
        state[f"convs.{2 * i}.conv.blur.kernel"] = blur
        state[f"to_rgbs.{i}.upsample.kernel"] = blur
    state = {k: v.detach().float().contiguous().clone() for k, v in state.items()}

    config = {"size": resolution, "style_dim": w_dim, "n_mlp": len(fcs),
              "channels": {res: int(width) for res, width in widths.items()},
              "lr_mlp": lr_mul, "blur_kernel": taps}
    latent_avg = mapping.buffers.get("w_avg")
    kwargs = generator.init_kwargs
    info = {"source": "nvidia-pickle", "z_dim": z_dim, "w_dim": w_dim, "c_dim": c_dim,
            "img_resolution": resolution, "img_channels": channels,
            "mapping_kwargs": _json_safe(kwargs.get("mapping_kwargs", {})),
            "synthesis_kwargs": _json_safe(kwargs.get("synthesis_kwargs", {})),
            "notes": [f"conv_clamp={c:g} (activation clipping) is not reproduced" for c in sorted(clamps)]}
    return ConvertedGenerator(state, config, None if latent_avg is None else latent_avg.float().clone(), info)


def read_nvidia_stylegan2(path: str | Path) -> ConvertedGenerator:
    """Load an NVIDIA pickle safely and convert its G_ema to the stylegan2 backbone's layout."""
    path = Path(path)
    return convert_stylegan2(_generator_record(load_nvidia_pickle(path), path), path)
