"""Run folders: where a training run keeps its config, logs, state, samples and models.

    <run>/config.toml                  resolved configuration (flat TOML)
    <run>/log.txt                      one line per logged step and event
    <run>/state/latest.pt              training state for --resume (tensors, dicts, numbers only)
    <run>/samples/step_N.mp4           sample videos
    <run>/tensorboard/                 loss curves (TensorBoard event files)
    <run>/motion_step_N.safetensors    periodic motion-model exports
    <run>/motion.safetensors           the final motion model
    <run>/best.safetensors             the export that scored best on --eval-metric (with --eval-every)
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import tomllib
from pathlib import Path

from .errors import MocohdError

DEFAULT_RUNS_ROOT = Path("mocohd-runs")
MOTION_FILE = "motion.safetensors"


class RunDir:
    """Paths inside one run folder."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    config = property(lambda self: self.path / "config.toml")
    log = property(lambda self: self.path / "log.txt")
    state = property(lambda self: self.path / "state" / "latest.pt")
    samples = property(lambda self: self.path / "samples")
    tensorboard = property(lambda self: self.path / "tensorboard")
    motion = property(lambda self: self.path / MOTION_FILE)
    best = property(lambda self: self.path / "best.safetensors")  # the export with the best --eval-metric

    def motion_at(self, step: int) -> Path:
        return self.path / f"motion_step_{step}.safetensors"

    def sample_at(self, step: int, fmt: str) -> Path:
        return self.samples / (f"step_{step}" if fmt == "png" else f"step_{step}.{fmt}")

    def append_log(self, line: str) -> None:
        stamp = _dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
        with open(self.log, "a", encoding="utf-8") as handle:
            handle.write(f"{stamp} {line}\n")


def new_run_path(root: str | Path = DEFAULT_RUNS_ROOT, prefix: str = "train") -> Path:
    """<root>/<prefix>-YYYYmmdd-HHMMSS, with a numeric suffix if that folder exists already."""
    root = Path(root)
    base = f"{prefix}-{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    path, n = root / base, 1
    while path.exists():
        n += 1
        path = root / f"{base}-{n}"
    return path


def latest_run(root: str | Path = DEFAULT_RUNS_ROOT) -> Path | None:
    """The most recently finished run under `root` (the one whose motion.safetensors is newest)."""
    root = Path(root)
    if not root.is_dir():
        return None
    finished = [p.parent for p in root.glob(f"*/{MOTION_FILE}") if p.is_file()]
    if not finished:
        return None
    return max(finished, key=lambda run: (run / MOTION_FILE).stat().st_mtime)


# -- flat TOML -----------------------------------------------------------------------------------
def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise ValueError("TOML floats must be finite here")
        return repr(value)
    if isinstance(value, (str, Path)):
        return json.dumps(str(value))  # a JSON string is a valid TOML basic string
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def dumps_flat_toml(values: dict) -> str:
    """A flat TOML document (no tables); keys with a None value are left out."""
    return "".join(f"{key} = {_toml_value(value)}\n" for key, value in values.items() if value is not None)


def read_toml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise MocohdError("config file not found", path=path, fix="check the path given to --config")
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise MocohdError(f"not valid TOML ({exc})", path=path, fix="fix the syntax (key = value per line)") from exc
