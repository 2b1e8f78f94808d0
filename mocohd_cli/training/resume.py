"""Where a run goes, what it continues, and which settings it runs with: the one place that
resolves `--out`, `--resume`, `--preset` and `--config`.

Settings are layered, later over earlier:
    TrainConfig defaults < --preset < the resumed run's config.toml < --config FILE < options given
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable

import torch

from ..infra.errors import MocohdError, brief
from ..infra.runs import DEFAULT_RUNS_ROOT, RunDir, RunLock, new_run_path, read_toml
from .config import RESUME_KEYS, RESUME_KEYS_ADDED, TrainConfig, ungrouped
from .presets import get_preset, preset_values


def find_resumable_run(root: str | Path) -> Path | None:
    """The run under `root` whose training state was written last."""
    states = list(Path(root).glob("*/state/latest.pt"))
    return max(states, key=lambda p: p.stat().st_mtime).parent.parent if states else None


def run_folder(out: str | Path | None, runs_root: str | Path, resume: bool) -> Path:
    """The run folder a training run writes: --out, else the latest resumable run under the runs
    root (with --resume), else a new timestamped folder. Refuses to resume a folder without a
    training state, and to start over a folder that holds one."""
    if out is not None and not str(out).strip():
        raise MocohdError("--out is empty", fix="name the run folder, or leave --out out for a new one under --runs-root")
    if out:
        path = Path(out)
        if path.exists() and not path.is_dir():
            raise MocohdError("--out names a file, not a folder", path=path, fix="choose another --out")
    elif resume:
        path = find_resumable_run(runs_root)
        if path is None:
            raise MocohdError(f"--resume: no run with a training state under {runs_root}",
                              fix="pass --out RUN_DIR of the run to continue")
    else:
        path = new_run_path(runs_root)
    has_state = RunDir(path).state.exists()
    if resume and not has_state:
        raise MocohdError("--resume: this run folder has no training state (state/latest.pt)", path=path,
                          fix="check --out, or start a new run without --resume")
    if not resume and has_state:
        raise MocohdError("this run folder already holds a training run", path=path,
                          fix="pass --resume to continue it, or choose another --out")
    return path


def claim_run_folder(out: str | Path | None, runs_root: str | Path, resume: bool) -> RunLock:
    """The run folder (`run_folder`), locked for this process (infra/runs.py RunLock), checked
    again once locked: another run may have finished in it while this one was starting."""
    lock = RunLock(run_folder(out, runs_root, resume)).acquire()
    try:
        run_folder(lock.path, runs_root, resume)
    except BaseException:
        lock.release()
        raise
    return lock


def refuse_out_inside_data(out: Path, data: str | Path | None) -> None:
    """A run folder inside its own dataset would train, once resumed, on its own sample videos."""
    if data is None:
        return
    data_path, run_path = Path(data).resolve(), out.resolve()
    if run_path == data_path or data_path in run_path.parents:
        raise MocohdError("the run folder is inside the dataset (--data)", path=out,
                          fix="put --out outside the --data folder")


def load_state_parts(parts: Iterable[tuple[str, Callable[[Any], Any], Any]], path: Path,
                     what: str = "training state") -> None:
    """`load(value)` for each (name, load, value) of a saved state, every failure (wrong keys,
    shapes or types in an edited or foreign state) one MocohdError naming the file and the part."""
    for name, load, value in parts:
        try:
            load(value)
        except (RuntimeError, ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise MocohdError(f"the {what}'s {name!r} does not fit this run ({reason})", path=path,
                              fix="the state is damaged, edited or from another version; start a new run") from exc


def set_torch_rng(state: Any) -> None:
    """torch.set_rng_state, for a value read from a file."""
    if not (isinstance(state, torch.Tensor) and state.dtype == torch.uint8 and state.dim() == 1):
        raise TypeError("the torch random-number state is not a byte tensor")
    torch.set_rng_state(state)


def check_compatible(saved: dict, config: TrainConfig, state_path: Path) -> None:
    """A resumed run keeps the settings that shape its models and its data stream."""
    saved = {**RESUME_KEYS_ADDED, **saved}  # a state from before a key existed was trained with its old value
    for key in RESUME_KEYS:
        if key not in saved:
            continue
        if not isinstance(saved[key], (str, int, float, bool, type(None))):  # no deep comparison of file data
            raise MocohdError(f"--resume: the state's {key} is not a plain value ({brief(saved[key])})",
                              path=state_path, fix="the state is damaged or edited; start a new run")
        if saved[key] != getattr(config, key):
            raise MocohdError(f"--resume: {key} was {brief(saved[key])} in this run but is now "
                              f"{getattr(config, key)!r}", path=state_path,
                              fix=f"resume with the run's own settings (drop the {key} option)")


def given_and_file(options: dict, config_file: str | Path | None) -> tuple[dict, dict]:
    """The options given (None: not given, left out) and the values of --config FILE."""
    return ({k: v for k, v in options.items() if v is not None},
            ungrouped(read_toml(config_file), source=config_file) if config_file is not None else {})


def resumed_values(given: dict, from_file: dict, default_root: str | Path) -> dict:
    """With --resume (given or in the file): the saved config.toml of the run it continues (--out,
    else the latest run with a state under the runs root), or {}."""
    if not given.get("resume", from_file.get("resume")):
        return {}
    out = given.get("out") or from_file.get("out")
    run = Path(out) if out else find_resumable_run(given.get("runs_root") or from_file.get("runs_root")
                                                    or default_root)
    if run is None or not RunDir(run).config.exists():
        return {}
    return ungrouped(read_toml(RunDir(run).config), source=RunDir(run).config)


def resolve_config(options: dict, *, config_file: Path | None = None, defaults: dict | None = None) -> TrainConfig:
    """The configuration of a run from the layers above. `options` are the values given on the
    command line (None: not given); `defaults` sit just above TrainConfig's own (the built-in
    example's schedule)."""
    given, from_file = given_and_file(options, config_file)
    preset = given.get("preset") or from_file.get("preset")
    values: dict = dict(defaults or {})
    if preset:
        chosen = get_preset(preset)
        mode = given.get("mode")
        if mode and chosen.values.get("mode", mode) != mode:
            command = "transfer" if chosen.values["mode"] == "cross-domain" else "train"
            raise MocohdError(f"preset {preset!r} is {chosen.values['mode']} training",
                              fix=f"run it with `mocohd {command} --preset {preset}`")
        values.update(preset_values(chosen))
    values.update(resumed_values(given, from_file, DEFAULT_RUNS_ROOT))
    values.update(from_file)
    values.update(given)
    asked = {**from_file, **given}
    if preset and "batch_size" in asked and "global_batch" not in asked:
        values.pop("global_batch", None)  # --batch-size given over a preset: it, not the preset's global batch
    return TrainConfig.from_dict(values, source=config_file)


