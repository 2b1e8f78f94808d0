"""What produced a run: versions, device, command line, CPU threads and git commit, written beside config.toml.

    <run>/provenance.toml      one [[start]] table per (re)start of the run, appended

A resumed run appends a table rather than replacing the first, so the file tells which code and
machine made each stretch of the run. Tokens that look like Hugging Face tokens are masked in the
command line.
"""
from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path
import platform
import re
import shlex
import subprocess
import sys
import tomllib

import torch

from . import threads
from .runs import dumps_toml
from .version import __version__

PROVENANCE_FILE = "provenance.toml"
_TOKEN = re.compile(r"hf_[A-Za-z0-9]{8,}")


def git_commit(where: str | Path | None = None) -> dict:
    """{"git_commit": sha, "git_dirty": bool} when `where` (default: the working directory) is inside a
    git work tree, else {}. Never fails: no git, no repository or a slow git all give {}."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=where or os.getcwd(), capture_output=True, text=True,
                                  timeout=10, check=False)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit:
        return {}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"git_commit": commit, "git_dirty": bool(status)} if status is not None else {"git_commit": commit}


def command_line(argv: list[str] | None = None) -> str:
    """The command line, shell-quoted, with anything that looks like a Hub token masked."""
    argv = list(sys.argv if argv is None else argv)
    if argv:
        argv[0] = Path(argv[0]).name
    return _TOKEN.sub("hf_***", shlex.join(argv))


def collect(*, device: object = None, step: int | None = None, argv: list[str] | None = None) -> dict:
    """Everything a [[start]] table records."""
    cuda = torch.version.cuda
    record = {
        "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "step": step,
        "mocohd": __version__,
        "torch": torch.__version__,
        "cuda": cuda,  # the CUDA torch was built with (None: a CPU build)
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(device) if device is not None else None,
        "command": command_line(argv),
        **threads.provenance_fields(),  # threads, threads_source, ... (infra/threads.py)
        **git_commit(),
    }
    if device is not None and str(device).startswith("cuda") and torch.cuda.is_available():
        record["gpu"] = torch.cuda.get_device_name(torch.device(str(device)))
    return record


def append_provenance(run_path: str | Path, **fields) -> Path:
    """Append one [[start]] table (see `collect`) to <run>/provenance.toml."""
    path = Path(run_path) / PROVENANCE_FILE
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(("\n" if path.stat().st_size else "") + "[[start]]\n" + dumps_toml(collect(**fields)))
    return path


def read_provenance(run_path: str | Path) -> list[dict]:
    """The [[start]] tables of a run, oldest first ([] without a provenance file)."""
    path = Path(run_path) / PROVENANCE_FILE
    if not path.is_file():
        return []
    with open(path, "rb") as handle:
        return list(tomllib.load(handle).get("start", []))
