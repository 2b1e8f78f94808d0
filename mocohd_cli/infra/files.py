"""Reading and writing files safely: hashes, atomic writes, pickle-free loading."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch

from .errors import MocohdError


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


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success rename it over `path`.

    A crash mid-write leaves the previous file untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # keep the real suffix last: writers such as ffmpeg pick the format from it
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():  # mkstemp makes files 0600: give them what the umask allows, as open() would
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def torch_load_safely(path: str | Path, what: str = "checkpoint") -> object:
    """torch.load with weights_only=True: no pickled code ever runs."""
    path = require_exists(path, what)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for bad files
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MocohdError(
            f"cannot read this {what} as a PyTorch file of tensors ({reason})",
            path=path,
            fix="pass a PyTorch checkpoint of tensors (.pt/.pth) or a .safetensors file; "
            "files that need arbitrary pickled code are refused",
        ) from exc


def read_safetensors(path: str | Path, what: str = "file") -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a .safetensors file, with a clear error for anything else."""
    from safetensors import safe_open

    path = require_exists(path, what)
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
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            return dict(handle.metadata() or {})
    except Exception:
        return None


def write_safetensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, object]) -> Path:
    """Write tensors atomically; metadata values that are not strings are stored as JSON."""
    from safetensors.torch import save_file

    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return Path(path)
