"""Reading and writing files safely: hashes, atomic writes, pickle-free loading."""
from __future__ import annotations

from contextlib import contextmanager
import hashlib
import json
import os
from pathlib import Path
import stat
import tempfile
from typing import Iterator

from safetensors import safe_open
from safetensors.torch import save_file
import torch

from .errors import MocohdError
from .pickle_scan import scan_torch_file

CACHE_ENV = "MOCOHD_CACHE"


def cache_dir() -> Path:
    """Where mocohd caches what it can recompute (PCA statistics, example datasets):
    $MOCOHD_CACHE, else $XDG_CACHE_HOME/mocohd, else ~/.cache/mocohd."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "mocohd"


def sha256_of(path: str | Path) -> str:
    """sha256 of a file, or of a folder's files (names and bytes, in sorted order)."""
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode())
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def require_exists(path: str | Path, what: str, fix: str | None = None) -> Path:
    path = Path(path)
    if not path.exists():
        raise MocohdError(f"{what} not found", path=path, fix=fix or "check the path")
    return path


def is_regular_file(path: str | Path) -> bool:
    """A plain file (symlinks followed): not a folder, FIFO, socket or device, which would block
    or never end when read."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def require_regular_file(path: str | Path, what: str, fix: str | None = None) -> Path:
    """`path` if it is a plain file; else one error saying what it is instead."""
    path = require_exists(path, what, fix)
    if not is_regular_file(path):
        kind = "a folder" if path.is_dir() else "not a regular file (a FIFO, socket or device)"
        raise MocohdError(f"this {what} is {kind}", path=path, fix=fix or "pass the path of a file")
    return path


MAX_TEXT_FILE = 16 << 20  # bytes: config, labels and index files are far smaller


def read_small_text(path: str | Path, what: str, fix: str | None = None, *, limit: int = MAX_TEXT_FILE) -> str:
    """The UTF-8 text of a small plain file (configs, label lists), with one clear error for a
    missing, special (FIFO, device), oversized, unreadable or non-UTF-8 file."""
    path = require_regular_file(path, what, fix)
    try:
        with open(path, "rb") as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise MocohdError(f"cannot read this {what} ({exc.strerror or exc})", path=path, fix=fix or "check it") from exc
    if len(data) > limit:
        raise MocohdError(f"this {what} is larger than {limit >> 20} MiB", path=path,
                          fix=fix or "pass the small text file this option expects")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MocohdError(f"this {what} is not UTF-8 text ({exc.reason} at byte {exc.start})", path=path,
                          fix=fix or "save it as UTF-8 text") from exc


# atomic_path's temporaries: ".<name>.<random>.tmp<suffix>" beside the file they will replace.
TEMPORARY_GLOB = ".*.tmp*"


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete the temporaries that writes killed mid-way left in `folder` (a SIGKILL skips
    atomic_path's cleanup). Only for folders no other process writes (a locked run folder)."""
    removed = []
    if folder.is_dir():
        for tmp in folder.glob(TEMPORARY_GLOB):
            if tmp.is_file() and not tmp.is_symlink():
                tmp.unlink(missing_ok=True)
                removed.append(tmp)
    return removed


def _write_failure(exc: BaseException) -> str | None:
    """Why a write failed, when it is the file system's doing (full, read-only, not a folder);
    None for anything else. torch.save reports a full disk as a RuntimeError."""
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    text = str(exc)
    if isinstance(exc, RuntimeError) and ("write" in text or "unexpected pos" in text):
        return text.strip().splitlines()[0][:200]
    return None


def write_error(path: Path, exc: OSError | RuntimeError) -> MocohdError:
    """The one error for a write the file system refused (see `_write_failure`); the previous
    version of `path` is left as it was by every writer that uses it."""
    return MocohdError(f"cannot write this file ({_write_failure(exc) or exc}); the previous version, if any, "
                       "is unchanged", path=path, fix="free disk space, or choose a writable output folder")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success rename it over `path`.

    A crash mid-write leaves the previous file untouched, and a write the file system refuses
    (disk full, read-only folder, a file where a folder should be) is one MocohdError naming the file.
    """
    path = Path(path)
    tmp_path = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # keep the real suffix last: writers such as ffmpeg pick the format from it
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent)
        os.close(fd)
        tmp_path = Path(tmp)
        yield tmp_path
        if tmp_path.exists():  # mkstemp makes files 0600: give them what the umask allows, as open() would
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, path)
    except (OSError, RuntimeError) as exc:
        if _write_failure(exc) is None:
            raise
        raise write_error(path, exc) from exc
    finally:
        if tmp_path is not None and tmp_path.exists():
            tmp_path.unlink()


def check_writable_file(path: str | Path, what: str, fix: str) -> Path:
    """`path` if `atomic_path` will be able to write it later, else one MocohdError now, before the
    work whose result it holds: a folder of that name, a parent that cannot be made (a file in the
    way, a read-only place) or is not writable. The parent folder is made if missing."""
    path = Path(path)
    if path.is_dir():
        raise MocohdError(f"{what} names a folder", path=path, fix=fix)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MocohdError(f"cannot make the folder of {what}: {exc.strerror or exc}", path=path, fix=fix) from exc
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise MocohdError(f"the folder of {what} is not writable", path=path, fix=fix)
    return path


def _torch_load_reason(exc: Exception) -> str:
    """What torch's loader objected to, without its advice to retry with weights_only=False
    (which would run the file's code)."""
    text = str(exc).strip()
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1].split("Check the documentation", 1)[0]
        return "the weights-only unpickler refused it: " + " ".join(text.split())[:200]
    return (text.splitlines() or [type(exc).__name__])[0][:200]


def torch_load_safely(path: str | Path, what: str = "checkpoint") -> object:
    """torch.load with weights_only=True (no pickled code ever runs) after a bounded pre-scan of
    its pickle (no pickled work blows up either: infra/pickle_scan.py)."""
    path = require_regular_file(path, what)
    scan_torch_file(path, what=what)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for bad files
        reason = _torch_load_reason(exc)
        raise MocohdError(
            f"cannot read this {what} as a PyTorch file of tensors ({reason})",
            path=path,
            fix="pass a PyTorch checkpoint of tensors (.pt/.pth) or a .safetensors file; "
            "files that need arbitrary pickled code are refused",
        ) from exc


def read_safetensors(path: str | Path, what: str = "file") -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a .safetensors file, with a clear error for anything else."""
    path = require_regular_file(path, what)
    try:
        tensors = {}
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = dict(handle.metadata() or {})
            for key in handle.keys():
                tensors[key] = handle.get_tensor(key)
    except Exception as exc:
        raise MocohdError(
            f"not a readable .safetensors {what} ({exc})",
            path=path,
            fix="pass a file written by mocohd (or another safetensors writer)",
        ) from exc
    return tensors, metadata


def safetensors_metadata(path: str | Path) -> dict[str, str] | None:
    """Metadata of a .safetensors file, or None if the file is not one."""
    if not is_regular_file(path):
        return None
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            return dict(handle.metadata() or {})
    except Exception:
        return None


def write_safetensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, object]) -> Path:
    """Write tensors atomically; metadata values that are not strings are stored as JSON."""
    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return Path(path)
