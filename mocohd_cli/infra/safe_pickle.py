"""Reading network pickles without running code: a restricted unpickler with inert stand-ins.

Pickles of whole networks (NVIDIA's `torch_utils.persistence` format, used by StyleGAN2-ADA,
StyleGAN3 and their descendants) are plain `pickle.dump`s. Each persistent module is stored
through `torch_utils.persistence._reconstruct_persistent_obj(meta)`, where `meta` carries the
Python source of the module that defines the class (which the original loader `exec`s), the
class name and the instance `__dict__`. Tensors are stored as `torch._utils._rebuild_tensor_v2`
calls on storages serialised with `torch.save` (legacy format) inside
`torch.storage._load_from_bytes`.

`RestrictedUnpickler` resolves only a fixed list of globals, each to an inert function of this
module: persistent objects become `PersistentRecord`s (class name + state; the embedded source
is never executed), tensors are rebuilt from the raw storage bytes, plain torch modules keep
only their state, and anything else (os.system, builtins.eval, any unknown class) stops the
load with an `UnsafePickleError`. What a record means (which network, which layout) is left to
the backbone plugin that reads it.
"""
from __future__ import annotations

import io
import pickle
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .errors import MocohdError
from .files import is_regular_file, require_regular_file
from .pickle_scan import scan_pickle, scan_pickles

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # torch.save's legacy-format magic number
_LEGACY_PROTOCOL = 1001
# The fix of a generic refusal; a reader of one kind of pickle passes its own to `restricted_load`.
PICKLE_FIX = "pass a network pickle of plain data, tensors and torch_utils.persistence modules"


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
_TORCH_DTYPES = {name: getattr(torch, name) for name in (
    "float32", "float64", "float16", "bfloat16", "int64", "int32", "int16", "int8", "uint8", "bool")}


def _reconstruct_persistent(meta: dict) -> PersistentRecord:
    if not isinstance(meta, dict) or meta.get("type") != "class" or not isinstance(meta.get("class_name"), str):
        raise UnsafePickleError("malformed torch_utils.persistence record", fix=PICKLE_FIX)
    state = meta.get("state")
    source = meta.get("module_src")
    return PersistentRecord(meta["class_name"], dict(state) if isinstance(state, dict) else {},
                            meta.get("version"), len(source) if isinstance(source, str) else 0)


def _storage_data(storage) -> Tensor:
    if not isinstance(storage, _LegacyStorage):
        raise UnsafePickleError("a tensor refers to something that is not a storage", fix=PICKLE_FIX)
    return storage.data


def _rebuild_tensor(storage, storage_offset, size, stride, *_ignored) -> Tensor:
    data = _storage_data(storage)
    size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
    needed = storage_offset + sum((s - 1) * st for s, st in zip(size, stride)) + 1 if all(size) else 0
    if needed > data.numel():
        raise UnsafePickleError("a tensor reaches past the end of its storage", fix=PICKLE_FIX)
    return torch.as_strided(data, size, stride, int(storage_offset))


def _rebuild_parameter(data, requires_grad=False, *_ignored) -> Tensor:
    if not isinstance(data, Tensor):
        raise UnsafePickleError("a parameter holds no tensor", fix=PICKLE_FIX)
    return data


def _rebuild_from_type(func, new_type, args, state) -> Tensor:
    if func not in (_rebuild_tensor, _rebuild_parameter) or new_type is not Tensor:
        raise UnsafePickleError("unsupported tensor subclass in the pickle", fix=PICKLE_FIX)
    return func(*args)


def _numpy_scalar(dtype, data=None):
    dtype = np.dtype(dtype)
    if dtype.hasobject or not isinstance(data, bytes):
        raise UnsafePickleError("unsupported numpy scalar in the pickle", fix=PICKLE_FIX)
    return np.frombuffer(data, dtype=dtype, count=1)[0]


def _numpy_reconstruct(cls, shape, dtype_code):
    if cls is not np.ndarray:
        raise UnsafePickleError("unsupported numpy array type in the pickle", fix=PICKLE_FIX)
    return np.ndarray.__new__(np.ndarray, shape, dtype_code)


def _copyreg_reconstructor(cls, base, state):
    if isinstance(cls, type) and issubclass(cls, (_InertObject, InertDict)) and base in (object, dict):
        return cls.__new__(cls)
    raise UnsafePickleError("the pickle rebuilds an object of a class that is not allowed", fix=PICKLE_FIX)


def _load_from_bytes(data: bytes) -> _LegacyStorage:
    """One storage in torch.save's legacy format, parsed by hand: the pickles in it go through
    the same restricted unpickler, the raw bytes become a tensor."""
    if not isinstance(data, (bytes, bytearray)):
        raise UnsafePickleError("storage bytes expected", fix=PICKLE_FIX)
    scan_pickles(data, 5, what="storage inside the network pickle")  # bounded work before unpickling
    stream = io.BytesIO(data)
    if RestrictedUnpickler(stream).load() != _LEGACY_MAGIC:
        raise UnsafePickleError("a storage in the pickle is not in torch's legacy format", fix=PICKLE_FIX)
    if RestrictedUnpickler(stream).load() != _LEGACY_PROTOCOL:
        raise UnsafePickleError("unsupported torch storage protocol", fix=PICKLE_FIX)
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
            raise UnsafePickleError("a storage key is not declared", fix=PICKLE_FIX)
        dtype, _ = records[key]
        count = int.from_bytes(stream.read(8), "little")
        raw = stream.read(count * dtype.itemsize)
        if len(raw) != count * dtype.itemsize:
            raise MocohdError("the pickle is truncated (a storage ends early)", fix="download the file again")
        loaded[key] = torch.frombuffer(bytearray(raw), dtype=dtype) if count else torch.empty(0, dtype=dtype)
    if not isinstance(root, str) or root not in loaded:
        raise UnsafePickleError("unexpected content in a storage", fix=PICKLE_FIX)
    return _LegacyStorage(loaded[root])


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

    def __init__(self, file, *, storages: dict | None = None, source: Path | None = None, fix: str = PICKLE_FIX):
        super().__init__(file)
        self._storages = storages
        self._source = source
        self._fix = fix

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
            path=self._source, fix=self._fix + " (nothing from this file was executed)")

    def persistent_load(self, pid):
        # Only inside torch's legacy storage format: ('storage', type, key, location, numel, ...).
        if (self._storages is None or not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage"
                or not isinstance(pid[1], _StorageType) or not isinstance(pid[2], str)):
            raise UnsafePickleError("unexpected persistent reference in the pickle", path=self._source,
                                    fix=self._fix)
        self._storages[pid[2]] = (pid[1].dtype, int(pid[4]))
        return pid[2]


def restricted_load(path: str | Path, *, what: str = "network pickle", fix: str = PICKLE_FIX) -> object:
    """The top-level object of the pickle at `path`, loaded by `RestrictedUnpickler` (inert records,
    plain tensors). Every failure is a MocohdError naming the file; `fix` replaces the generic advice."""
    path = require_regular_file(path, what, fix=fix)
    try:
        with open(path, "rb") as handle:
            scan_pickle(handle, path=path, what=what)  # bounded work before unpickling
            handle.seek(0)
            return RestrictedUnpickler(handle, source=path, fix=fix).load()
    except MocohdError as exc:
        if exc.path is None or exc.fix == PICKLE_FIX:
            raise type(exc)(exc.message, path=exc.path or path,
                            fix=fix if exc.fix == PICKLE_FIX else exc.fix) from exc
        raise
    except Exception as exc:
        raise MocohdError(f"cannot read this file: not a readable {what} ({type(exc).__name__}: {exc})",
                          path=path, fix=fix) from exc


def looks_like_persistence_pickle(path: str | Path) -> bool:
    """Cheap check: a pickle whose first megabyte names torch_utils.persistence."""
    path = Path(path)
    if not is_regular_file(path):
        return False
    with open(path, "rb") as handle:
        head = handle.read(1 << 20)
    return head[:1] == b"\x80" and b"torch_utils.persistence" in head
