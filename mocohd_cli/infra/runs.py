"""Run folders: where a training run keeps its config, logs, state, samples and models.

    <run>/config.toml                  resolved configuration (TOML, a table per settings group)
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
from pathlib import Path
import tomllib

from filelock import FileLock, Timeout

from .errors import MocohdError
from .files import read_small_text, remove_stale_temporaries

DEFAULT_RUNS_ROOT = Path("mocohd-runs")
MOTION_FILE = "motion.safetensors"
LOCK_FILE = ".lock"


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


class RunLock:
    """Exclusive use of a run folder for one process's lifetime: an OS file lock (the `filelock`
    package) on <run>/.lock, so a second `mocohd train --out` on the same folder stops at once
    instead of overwriting the first one's model and state. The kernel drops the lock when the
    process dies, so a killed run never leaves the folder locked.

    Taking the lock also removes temporary files a killed write left behind (nothing else can be
    writing them while the lock is held). A folder the lock created is removed again on release
    if nothing else was written into it (a run that failed to start leaves no trace)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = None
        self._created = False

    def acquire(self) -> "RunLock":
        self._created = not self.path.exists()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise MocohdError(f"cannot create the run folder ({exc.strerror or exc})", path=self.path,
                              fix="choose an --out in a writable folder (and not a file)") from exc
        lock = FileLock(self.path / LOCK_FILE, timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise MocohdError("another mocohd process is using this run folder", path=self.path,
                              fix="wait for it to finish, or choose another --out") from None
        except OSError as exc:
            raise MocohdError(f"cannot lock the run folder ({exc.strerror or exc})", path=self.path,
                              fix="choose an --out in a writable folder") from exc
        self._lock = lock
        for folder in (self.path, self.path / "state", self.path / "samples"):
            remove_stale_temporaries(folder)
        return self

    def release(self) -> None:
        if self._lock is None:
            return
        self._lock.release()
        self._lock = None
        if self._created and {p.name for p in self.path.iterdir()} <= {LOCK_FILE}:
            (self.path / LOCK_FILE).unlink(missing_ok=True)
            self.path.rmdir()

    def __enter__(self) -> "RunLock":
        return self if self._lock is not None else self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


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


# -- TOML -----------------------------------------------------------------------------------
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


def dumps_toml(values: dict) -> str:
    """A TOML document: plain keys first, then one table per dict value (`[name]`, one level); keys with a
    None value are left out, and so are tables left empty."""
    def lines(items: dict) -> str:
        return "".join(f"{key} = {_toml_value(value)}\n" for key, value in items.items() if value is not None)

    text = lines({key: value for key, value in values.items() if not isinstance(value, dict)})
    for name, table in values.items():
        body = lines(table) if isinstance(table, dict) else ""
        if body:
            text += ("\n" if text else "") + f"[{name}]\n{body}"
    return text


def read_toml(path: str | Path) -> dict:
    path = Path(path)
    text = read_small_text(path, "config file", fix="check the path given to --config")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise MocohdError(f"not valid TOML ({exc})", path=path, fix="fix the syntax (key = value per line)") from exc
