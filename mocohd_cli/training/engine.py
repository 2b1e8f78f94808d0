"""The training engine: what every training loop of mocohd shares, written once.

A loop is a `Task`: its modules, one `train_step`, its state and its exports. The engine drives it:

    run folder and lock    claimed before anything is written (infra/runs.py RunLock), by rank 0
    config record          <run>/config.toml, the settings the run resolved (a later --resume reads them)
    state and resume       <run>/state/latest.pt: the task's state, the step, the random-number state
    checkpoint cadence     every `checkpoint_every` steps and every `checkpoint_minutes`, and at the end
    stopping               at `task.total` steps, or after `minutes` with a resumable state
    SIGINT                 Ctrl-C finishes the step under way, then saves the state and the export; a
                           second Ctrl-C stops at once
    logging                log.txt lines (each loss's mean since the previous line), a TensorBoard writer (`tensorboard=True`), a progress bar
    samples and export     every `sample_every` steps (`task.export_step` + `task.write_samples`), and
                           the final export before the final samples: nothing optional may cost a run its model

Who uses it: the motion generator (training/trainer.py's Trainer; in-domain, cross-domain and the latent
phase, which are phases of one task), StyleGAN2 pre-training (plugins/stylegan2/pretrain.py) and the
inversion encoder (workflows/encoder.py: no run folder, its output is one file). A task with phases
reports the current one through `task.phase`, shown in the progress bar and the log.

A new loop implements the `Task` methods below and calls `Engine(task, cadence, ...).fit()`. A new
phase of the motion task (a step that trains the same motion model another way) is one more value of
Trainer.phase, dispatched by Trainer.train_step (training/trainer.py), with its settings in the config
group it belongs to (training/config.py).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
import logging
import math
from pathlib import Path
import signal
import threading
import time
from typing import Any, Callable, Protocol

from rich.progress import TextColumn
import torch

from ..infra.console import progress
from ..infra.distributed import DistContext
from ..infra.errors import MocohdError
from ..infra.files import atomic_path, torch_load_safely
from ..infra.provenance import append_provenance
from ..infra.runs import RunDir, RunLock, dumps_toml
from ..infra.tensorboard import log_hparams
from .resume import claim_run_folder, load_state_parts, set_torch_rng

log = logging.getLogger(__name__)


class Task(Protocol):
    """One training loop, as the engine drives it."""

    label: str            # the progress bar's text
    step: int             # steps done; train_step advances it
    total: int            # the step the run ends at
    # False: a KeyboardInterrupt raised inside train_step leaves the state half-updated (the motion
    # task's optimisers would disagree with its step), so the last checkpoint is kept instead.
    partial_step_is_safe: bool

    def train_step(self) -> dict[str, Any]: ...                 # losses (tensors or floats)
    def state_dict(self) -> dict: ...                           # everything but the step and RNG
    def load_state_dict(self, state: dict, path: Path) -> None: ...  # also sets self.step
    def generators(self) -> dict[str, torch.Generator]: ...     # its own random streams kept in the state
    def export(self, path: Path | None = None) -> Path: ...     # the model file
    def start_summary(self) -> str: ...                         # what the run trains on, for the log


@dataclass
class Cadence:
    """When the engine does what (None or 0: never)."""

    log_every: int | None = None
    sample_every: int | None = None
    checkpoint_every: int | None = None
    checkpoint_minutes: float | None = None
    eval_every: int | None = None
    minutes: float | None = None  # stop after this long, with a resumable state


def due(every: int | None, step: int) -> bool:
    return bool(every) and step % every == 0


class Engine:
    """Drives a Task to its end (see the module docstring). `run` None: no run folder (nothing but
    the task's export is written; no resume)."""

    def __init__(self, task, cadence: Cadence, *, run: RunDir | None = None, runs_root: str | Path | None = None,
                 resume: bool = False, config_values: dict | None = None, config_tables: dict[str, str] | None = None,
                 context: DistContext | None = None, tensorboard: bool = False, progress: bool = True,
                 say: Callable[[str], None] | None = None):
        self.task, self.cadence, self.run = task, cadence, run
        self.runs_root, self.resume, self.config_values = runs_root, resume, config_values or {}
        self.config_tables = config_tables or {}  # setting -> its table in config.toml (none: at the top)
        self.ctx = context
        self.is_main = context is None or context.is_main
        self.tensorboard, self.show_progress = tensorboard, progress
        self.say = say or log.info
        self.writer = None
        self._interrupted = False

    # -- state ---------------------------------------------------------------------------------
    def rng_state(self) -> dict:
        rng = {"torch": torch.get_rng_state()}
        device = getattr(self.ctx, "device", None)
        if device is not None and device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(device)
        rng.update({name: generator.get_state() for name, generator in self.task.generators().items()})
        return rng

    def save_state(self) -> Path | None:
        if self.run is None or not self.is_main:
            return None
        state = {**self.task.state_dict(), "step": self.task.step, "rng": self.rng_state()}
        with atomic_path(self.run.state) as tmp:
            torch.save(state, tmp)
        return self.run.state

    def load_state(self, what: str = "training state") -> None:
        """The task's state from <run>/state/latest.pt, then the random-number state."""
        path = self.run.state
        state = torch_load_safely(path, what)
        self.task.load_state_dict(state, path)  # checks the state's fields (its "rng" a mapping among them)
        rng = state["rng"]
        parts = [("rng", set_torch_rng, rng.get("torch"))]
        device = getattr(self.ctx, "device", None)
        if "cuda" in rng and device is not None and device.type == "cuda":
            parts.append(("cuda rng", lambda value: torch.cuda.set_rng_state(value, device), rng["cuda"]))
        parts += [(f"{name} rng", generator.set_state, rng.get(name))
                  for name, generator in self.task.generators().items()]
        load_state_parts(parts, path, what=what)

    # -- outputs -------------------------------------------------------------------------------
    def write_config(self) -> None:
        tables: dict[str, dict] = {table: {} for table in self.config_tables.values()}  # in config_tables' order
        record: dict = {}
        for key, value in {**self.config_values, "out": str(self.run.path)}.items():
            table = self.config_tables.get(key)
            (tables[table] if table else record)[key] = value
        record.update(tables)
        with atomic_path(self.run.config) as tmp:
            tmp.write_text(dumps_toml(record), encoding="utf-8")

    def append_log(self, line: str) -> None:
        if self.run is not None and self.is_main:
            self.run.append_log(line)

    def _open(self) -> None:
        """Rank 0: the run folder's config, log and TensorBoard writer."""
        if self.run is None or not self.is_main:
            return
        self.run.path.mkdir(parents=True, exist_ok=True)
        self.write_config()
        device = getattr(self.ctx, "device", None)
        if device is not None:
            append_provenance(self.run.path, device=device, step=self.task.step)
        summary = self.task.start_summary()
        self.append_log(("resumed" if self.task.step else "started") + f" at step {self.task.step}/"
                        f"{self.task.total}; {summary}")
        self.say(f"run folder: {self.run.path}")
        if self.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.run.tensorboard), purge_step=self.task.step or None)

    def record(self, losses: dict[str, float], rate: float) -> None:
        """Losses to TensorBoard and log.txt."""
        step = self.task.step
        if self.writer is not None:
            for name, value in losses.items():
                self.writer.add_scalar(f"loss/{name}", value, step)
            self.writer.add_scalar("speed/iterations_per_s", rate, step)
        on_log = getattr(self.task, "on_log", None)
        if callable(on_log):
            on_log(losses)
        phase = getattr(self.task, "phase", None)
        text = " ".join(f"{k}={v:.3f}" for k, v in losses.items())
        self.append_log(f"step {step}/{self.task.total} " + (f"[{phase}] " if phase else "") + f"{text} "
                        f"({rate:.2f} it/s)")

    def checkpoint(self) -> None:
        self.save_state()

    # -- SIGINT ----------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _deferred_sigint(self):
        """The first Ctrl-C sets a flag the loop reads between steps; the second one interrupts at once."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def on_sigint(signum, frame):
            if self._interrupted:
                raise KeyboardInterrupt
            self._interrupted = True
            self.say("interrupt: finishing this step, then saving (Ctrl-C again to stop at once)")

        previous = signal.signal(signal.SIGINT, on_sigint)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def _save_on_interrupt(self, *, partial: bool) -> None:
        if self.run is None:
            return  # nothing but the final export is written, and it is not final
        keep_state = not partial or getattr(self.task, "partial_step_is_safe", False)
        if self.is_main:
            if keep_state:
                self.save_state()
            self.task.export()
        self.append_log(f"interrupted at step {self.task.step}")
        if self.run is not None:
            kept = "state and export saved" if keep_state else "export saved, the last checkpoint kept"
            self.say(f"interrupted at step {self.task.step}: {kept}; continue with --resume --out {self.run.path}")

    # -- the loop --------------------------------------------------------------------------------
    def fit(self):
        """Train to the end, holding the run folder's lock throughout: a second process given the
        same --out stops before writing anything. Returns what `finish` returns."""
        lock: RunLock | None = None
        if self.run is not None and self.is_main:
            lock = claim_run_folder(self.run.path, self.runs_root, self.resume)
        try:
            return self._fit()
        finally:
            if lock is not None:
                lock.release()

    def _fit(self):
        task, cadence = self.task, self.cadence
        self._open()
        self._interrupted = False
        deadline = time.monotonic() + 60 * cadence.minutes if cadence.minutes else math.inf
        last_checkpoint = time.monotonic()
        started, start_step = time.perf_counter(), task.step
        losses: dict[str, float] = {}
        running: dict[str, tuple[Any, int]] = {}  # each loss's sum and count since the last log line
        bar = progress(TextColumn("{task.fields[losses]}"))
        bar.disable = bar.disable or not (self.is_main and self.show_progress)
        stopped_early = False
        with bar, self._deferred_sigint():
            bar_task = bar.add_task(task.label, total=task.total, completed=task.step, losses="")
            hooks = getattr(task, "on_loop_start", None)
            if callable(hooks):
                hooks(self)
            while task.step < task.total:
                try:
                    logged = task.train_step()
                except KeyboardInterrupt:
                    self._save_on_interrupt(partial=True)
                    raise
                step, last = task.step, task.step == task.total
                for name, value in logged.items():  # summed as they come: no device sync until a log line
                    value = value.detach() if isinstance(value, torch.Tensor) else value
                    total, count = running.get(name, (0.0, 0))
                    running[name] = (total + value, count + 1)
                if due(cadence.log_every, step) or last:
                    losses = {k: float(total) / count for k, (total, count) in running.items()}
                    running = {}
                    self._check_finite(losses)
                    if self.is_main:
                        rate = (step - start_step) / max(time.perf_counter() - started, 1e-9)
                        self.record(losses, rate)
                        bar.update(bar_task, losses=self._short(losses))
                if self.is_main and due(cadence.sample_every, step) and not last:
                    self.write_step_outputs(step)
                if cadence.eval_every and (due(cadence.eval_every, step) or last):
                    task.evaluate(self)
                checkpoint_due = due(cadence.checkpoint_every, step) or (
                    cadence.checkpoint_minutes and time.monotonic() - last_checkpoint > 60 * cadence.checkpoint_minutes)
                if checkpoint_due or last:
                    self.checkpoint()
                    last_checkpoint = time.monotonic()
                bar.update(bar_task, completed=step)
                if self._interrupted:
                    self._save_on_interrupt(partial=False)
                    raise KeyboardInterrupt
                if time.monotonic() >= deadline and not last:
                    stopped_early = True
                    break
        if stopped_early:
            self.checkpoint()
        self.last_losses = losses
        result = self.finish(losses, stopped_early)
        if self.ctx is not None:
            self.ctx.barrier()
        return result

    def write_step_outputs(self, step: int) -> None:
        export_step = getattr(self.task, "export_step", None)
        if callable(export_step):
            export_step(step)
        self.task.write_samples(self)

    def finish(self, losses: dict[str, float], stopped_early: bool):
        """The final export, then the final samples (rank 0)."""
        task = self.task
        if not self.is_main:
            return None
        export = task.export()
        task.write_samples(self, final=True)
        if self.writer is not None:
            log_hparams(self.writer, self.config_values, losses)
            self.writer.close()
        if stopped_early:
            self.append_log(f"stopped at step {task.step}/{task.total} after --minutes {self.cadence.minutes:g}: "
                            f"{export}")
            if self.run is not None:
                self.say(f"stopped at step {task.step} of {task.total} after {self.cadence.minutes:g} minutes: "
                         f"state and export saved; continue with --resume --out {self.run.path}")
        else:
            self.append_log(f"finished at step {task.step}: {export}")
        return export

    @staticmethod
    def _short(losses: dict[str, float]) -> str:
        """The progress bar's text: the G and D totals where the losses are named g/... and d/..."""
        sides = {side: [v for k, v in losses.items() if k.startswith(f"{side}/")] for side in "gd"}
        if not any(sides.values()):
            return " ".join(f"{k} {v:.3f}" for k, v in list(losses.items())[:3])
        return f"G {sum(sides['g']):.3f} D {sum(sides['d']):.3f}"

    def _check_finite(self, losses: dict[str, float]) -> None:
        bad = [k for k, v in losses.items() if not math.isfinite(v)]
        if bad:
            fix = getattr(self.task, "divergence_fix", "resume from the last state with a lower --lr")
            raise MocohdError(f"training diverged at step {self.task.step}: {', '.join(bad)} is not finite",
                              path=self.run.path if self.run is not None else None, fix=fix)
