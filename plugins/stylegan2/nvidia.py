"""NVIDIA StyleGAN2-ADA / StyleGAN3 pickles (StyleGAN2 configurations), read without running code.

Those files are plain `pickle.dump`s of whole modules. Each module is stored through
`torch_utils.persistence._reconstruct_persistent_obj(meta)`, where `meta` carries the Python
source of the module that defines the class (which NVIDIA's loader `exec`s), the class name
and the instance `__dict__`. Tensors are stored as `torch._utils._rebuild_tensor_v2` calls on
storages serialised with `torch.save` (legacy format) inside `torch.storage._load_from_bytes`.

`RestrictedUnpickler` resolves only a fixed list of globals, each to an inert function of this
module: persistent objects become `PersistentRecord`s (class name + state; the embedded source
is never executed), tensors are rebuilt from the raw storage bytes, and anything else (os.system,
builtins.eval, any unknown class) stops the load with a MocohdError.

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

import io
import math
import pickle
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from mocohd_cli.infra.errors import MocohdError
from mocohd_cli.infra.files import require_exists

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # torch.save's legacy-format magic number
_LEGACY_PROTOCOL = 1001
NOT_NVIDIA_FIX = "pass a network-snapshot-*.pkl written by NVIDIA's stylegan2-ada-pytorch or stylegan3 code"


class UnsafePickleError(MocohdError):
    """The pickle asked for something that could run code; nothing from it was executed."""


# -- inert stand-ins for what the pickle refers to --------------------------------------------
@dataclass
class PersistentRecord:
    """A `torch_utils.persistence` object: its class name and state, never its code."""

    class_name: str
    state: dict
    version: int | None = None
    source_chars: int = 0  # length of the embedded (unexecuted) module source

    def _table(self, key: str) -> dict:
        table = self.state.get(key) or {}
        return table if isinstance(table, dict) else {}

    @property
    def parameters(self) -> dict:
        return {k: v for k, v in self._table("_parameters").items() if v is not None}

    @property
    def buffers(self) -> dict:
        return {k: v for k, v in self._table("_buffers").items() if v is not None}

    @property
    def children(self) -> dict:
        return {k: v for k, v in self._table("_modules").items() if v is not None}

    @property
    def init_kwargs(self) -> dict:
        kwargs = self.state.get("_init_kwargs")
        return dict(kwargs) if isinstance(kwargs, dict) else {}

    def child(self, name: str) -> "PersistentRecord":
        module = self.children.get(name)
        if not isinstance(module, PersistentRecord):
            raise KeyError(name)
        return module

    def tensor(self, name: str) -> Tensor:
        value = self.parameters.get(name, self.buffers.get(name))
        if not isinstance(value, Tensor):
            raise KeyError(name)
        return value

    def attr(self, name: str, default=None):
        return self.state.get(name, default)

    def tensors(self, prefix: str = "") -> dict[str, Tensor]:
        """Parameters and buffers of this record and its children, as a flat state dict."""
        out = {prefix + k: v for k, v in {**self.parameters, **self.buffers}.items() if isinstance(v, Tensor)}
        for name, child in self.children.items():
            if isinstance(child, PersistentRecord):
                out.update(child.tensors(f"{prefix}{name}."))
        return out


class InertDict(dict):
    """Stands in for dnnlib.EasyDict (a dict subclass)."""


class _InertObject:
    """Stands in for a plain (non-persistent) torch module or other data object; keeps its state."""

    qualified_name = "?"

    def __init__(self, *args):
        self.state: object = None

    def __setstate__(self, state):
        self.state = state


def _inert_class(qualified_name: str) -> type:
    return type("Inert_" + qualified_name.replace(".", "_"), (_InertObject,), {"qualified_name": qualified_name})


@dataclass
class _StorageType:
    dtype: torch.dtype


@dataclass
class _LegacyStorage:
    """A storage read from torch.save's legacy bytes: a flat tensor of its dtype."""

    data: Tensor = field(repr=False)


_STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "DoubleStorage": torch.float64, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}


def _reconstruct_persistent(meta: dict) -> PersistentRecord:
    if not isinstance(meta, dict) or meta.get("type") != "class" or not isinstance(meta.get("class_name"), str):
        raise UnsafePickleError("malformed torch_utils.persistence record", fix=NOT_NVIDIA_FIX)
    state = meta.get("state")
    source = meta.get("module_src")
    return PersistentRecord(meta["class_name"], dict(state) if isinstance(state, dict) else {},
                            meta.get("version"), len(source) if isinstance(source, str) else 0)


def _storage_data(storage) -> Tensor:
    if not isinstance(storage, _LegacyStorage):
        raise UnsafePickleError("a tensor refers to something that is not a storage", fix=NOT_NVIDIA_FIX)
    return storage.data


def _rebuild_tensor(storage, storage_offset, size, stride, *_ignored) -> Tensor:
    data = _storage_data(storage)
    size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
    needed = storage_offset + sum((s - 1) * st for s, st in zip(size, stride)) + 1 if all(size) else 0
    if needed > data.numel():
        raise UnsafePickleError("a tensor reaches past the end of its storage", fix=NOT_NVIDIA_FIX)
    return torch.as_strided(data, size, stride, int(storage_offset))


def _rebuild_parameter(data, requires_grad=False, *_ignored) -> Tensor:
    if not isinstance(data, Tensor):
        raise UnsafePickleError("a parameter holds no tensor", fix=NOT_NVIDIA_FIX)
    return data


def _rebuild_from_type(func, new_type, args, state) -> Tensor:
    if func not in (_rebuild_tensor, _rebuild_parameter) or new_type is not Tensor:
        raise UnsafePickleError("unsupported tensor subclass in the pickle", fix=NOT_NVIDIA_FIX)
    return func(*args)


def _numpy_scalar(dtype, data=None):
    dtype = np.dtype(dtype)
    if dtype.hasobject or not isinstance(data, bytes):
        raise UnsafePickleError("unsupported numpy scalar in the pickle", fix=NOT_NVIDIA_FIX)
    return np.frombuffer(data, dtype=dtype, count=1)[0]


def _numpy_reconstruct(cls, shape, dtype_code):
    if cls is not np.ndarray:
        raise UnsafePickleError("unsupported numpy array type in the pickle", fix=NOT_NVIDIA_FIX)
    return np.ndarray.__new__(np.ndarray, shape, dtype_code)


def _copyreg_reconstructor(cls, base, state):
    if isinstance(cls, type) and issubclass(cls, (_InertObject, InertDict)) and base in (object, dict):
        return cls.__new__(cls)
    raise UnsafePickleError("the pickle rebuilds an object of a class that is not allowed", fix=NOT_NVIDIA_FIX)


def _load_from_bytes(data: bytes) -> _LegacyStorage:
    """One storage in torch.save's legacy format, parsed by hand: the pickles in it go through
    the same restricted unpickler, the raw bytes become a tensor."""
    if not isinstance(data, (bytes, bytearray)):
        raise UnsafePickleError("storage bytes expected", fix=NOT_NVIDIA_FIX)
    stream = io.BytesIO(data)
    if RestrictedUnpickler(stream).load() != _LEGACY_MAGIC:
        raise UnsafePickleError("a storage in the pickle is not in torch's legacy format", fix=NOT_NVIDIA_FIX)
    if RestrictedUnpickler(stream).load() != _LEGACY_PROTOCOL:
        raise UnsafePickleError("unsupported torch storage protocol", fix=NOT_NVIDIA_FIX)
    sys_info = RestrictedUnpickler(stream).load()
    if isinstance(sys_info, dict) and not sys_info.get("little_endian", True):
        raise MocohdError("big-endian pickles are not supported", fix="re-save the pickle on a little-endian machine")
    records: dict[str, tuple[torch.dtype, int]] = {}
    loader = RestrictedUnpickler(stream, storages=records)
    root = loader.load()
    keys = RestrictedUnpickler(stream).load()
    loaded: dict[str, Tensor] = {}
    for key in keys:
        if key not in records:
            raise UnsafePickleError("a storage key is not declared", fix=NOT_NVIDIA_FIX)
        dtype, _ = records[key]
        count = int.from_bytes(stream.read(8), "little")
        raw = stream.read(count * dtype.itemsize)
        if len(raw) != count * dtype.itemsize:
            raise MocohdError("the pickle is truncated (a storage ends early)", fix="download the file again")
        loaded[key] = torch.frombuffer(bytearray(raw), dtype=dtype) if count else torch.empty(0, dtype=dtype)
    if not isinstance(root, str) or root not in loaded:
        raise UnsafePickleError("unexpected content in a storage", fix=NOT_NVIDIA_FIX)
    return _LegacyStorage(loaded[root])


_TORCH_DTYPES = {name: getattr(torch, name) for name in (
    "float32", "float64", "float16", "bfloat16", "int64", "int32", "int16", "int8", "uint8", "bool")}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only whitelisted globals, each to an inert replacement."""

    SAFE_GLOBALS: dict[tuple[str, str], object] = {
        ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
        ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type,
        ("torch.storage", "_load_from_bytes"): _load_from_bytes,
        ("torch", "Tensor"): Tensor,
        ("torch.nn.parameter", "Parameter"): Tensor,
        ("torch", "Size"): tuple,
        ("collections", "OrderedDict"): OrderedDict,
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("copyreg", "_reconstructor"): _copyreg_reconstructor,
        ("builtins", "object"): object,
        ("builtins", "dict"): dict,
        ("dnnlib", "EasyDict"): InertDict,
        ("dnnlib.util", "EasyDict"): InertDict,
        ("numpy", "dtype"): np.dtype,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy.core.multiarray", "scalar"): _numpy_scalar,
        ("numpy._core.multiarray", "scalar"): _numpy_scalar,
        ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
    }

    def __init__(self, file, *, storages: dict | None = None, source: Path | None = None):
        super().__init__(file)
        self._storages = storages
        self._source = source

    def find_class(self, module: str, name: str):
        target = self.SAFE_GLOBALS.get((module, name))
        if target is not None:
            return target
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        if module == "torch" and name in _TORCH_DTYPES:
            return _TORCH_DTYPES[name]
        if re.fullmatch(r"torch\.nn\.modules\.\w+", module) and name[:1].isupper():
            return _inert_class(f"{module}.{name}")  # plain torch modules: state only
        raise UnsafePickleError(
            f"refusing to load {module}.{name} from this pickle: it is not a known data type and could run code",
            path=self._source, fix=NOT_NVIDIA_FIX + " (nothing from this file was executed)")

    def persistent_load(self, pid):
        # Only inside torch's legacy storage format: ('storage', type, key, location, numel, ...).
        if (self._storages is None or not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage"
                or not isinstance(pid[1], _StorageType) or not isinstance(pid[2], str)):
            raise UnsafePickleError("unexpected persistent reference in the pickle", path=self._source,
                                    fix=NOT_NVIDIA_FIX)
        self._storages[pid[2]] = (pid[1].dtype, int(pid[4]))
        return pid[2]


def load_nvidia_pickle(path: str | Path) -> object:
    """The pickle's top-level object (a dict with 'G', 'D', 'G_ema', ...), with inert records."""
    path = require_exists(path, "NVIDIA pickle", fix=NOT_NVIDIA_FIX)
    try:
        with open(path, "rb") as handle:
            return RestrictedUnpickler(handle, source=path).load()
    except MocohdError as exc:
        if exc.path is None:
            raise type(exc)(exc.message, path=path, fix=exc.fix) from exc
        raise
    except Exception as exc:
        raise MocohdError(f"cannot read this file as an NVIDIA network pickle ({type(exc).__name__}: {exc})",
                          path=path, fix=NOT_NVIDIA_FIX) from exc


def looks_like_nvidia_pickle(path: str | Path) -> bool:
    """Cheap check: a pickle whose first megabyte names torch_utils.persistence."""
    path = Path(path)
    if not path.is_file():
        return False
    with open(path, "rb") as handle:
        head = handle.read(1 << 20)
    return head[:1] == b"\x80" and b"torch_utils.persistence" in head


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
        keys = ", ".join(map(str, obj)) or "none"
        raise MocohdError(f"no 'G_ema' generator in this pickle (its keys: {keys})", path=path, fix=NOT_NVIDIA_FIX)
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

    from mocohd_plugins.stylegan2.layers import fir_kernel  # the kernels exactly as the backbone builds them

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
