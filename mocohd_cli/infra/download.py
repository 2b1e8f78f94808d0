"""Downloading a file into the cache: streamed, checked against its sha256, written atomically.

Nothing is downloaded when MOCOHD_OFFLINE (or HF_HUB_OFFLINE) is set to 1; the caller then says
which file to put where.
"""
from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

from .console import progress
from .errors import MocohdError
from .files import atomic_path

OFFLINE_ENVS = ("MOCOHD_OFFLINE", "HF_HUB_OFFLINE")
_CHUNK = 1 << 20


def offline() -> bool:
    return any(os.environ.get(name, "").strip().lower() in ("1", "true", "yes") for name in OFFLINE_ENVS)


def download(url: str, dest: str | Path, *, sha256: str | None, what: str, timeout: float = 60.0,
             instead: str | None = None) -> str:
    """Fetch `url` into `dest` and return the file's sha256. With `sha256` given, a file whose hash
    differs is refused (and nothing is written); without it, the caller records the hash it gets.
    instead: the option that passes a local copy instead (e.g. "--detector i3d=PATH"), for the errors' fix."""
    dest = Path(dest)
    or_pass = f", or pass a copy with {instead}" if instead else ""
    if offline():
        raise MocohdError(f"{what} is not here and downloads are off ({' / '.join(OFFLINE_ENVS)} is set)",
                          path=dest, fix=f"download {url} and put it at {dest}{or_pass}, or unset the variable")
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, atomic_path(dest) as tmp:
            total = int(response.headers.get("Content-Length") or 0) or None
            with open(tmp, "wb") as handle, progress() as bar:
                task = bar.add_task(f"downloading {dest.name}", total=total)
                for block in iter(lambda: response.read(_CHUNK), b""):
                    handle.write(block)
                    digest.update(block)
                    bar.advance(task, len(block))
            got = digest.hexdigest()
            if sha256 is not None and got != sha256.lower():
                raise MocohdError(f"the download of {what} has sha256 {got}, expected {sha256}", path=url,
                                  fix="try again later; if it persists the file at that address has changed: "
                                      f"pass a copy you trust explicitly{f' ({instead})' if instead else ''}")
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise MocohdError(f"could not download {what} ({exc})", path=url,
                          fix=f"check the network, or download it yourself and put it at {dest}{or_pass}") from exc
    return got
