"""CPU threads of a computing command: `--threads N` (or $MOCOHD_THREADS), applied before any torch work.

Torch's default, one OpenMP thread per core whose idle threads spin-wait, collapses when the CPU is
shared: beside one other CPU job on a 2-core machine a training run went 12-22x slower (issue 36).
Measured in benchmarks/threads.py (docs/threads.md). So a command that computes:

  - uses `--threads N`, else $MOCOHD_THREADS, else $OMP_NUM_THREADS as the user set it, else the
    default: one thread per core this process may use (its CPU affinity, physical cores), at most
    DEFAULT_MAX, fewer when the machine is oversubscribed (the 1-minute load average, read before this
    command computes anything, at or above the cores: `default_threads`);
  - sets OMP_WAIT_POLICY=PASSIVE when the process starts (`prepare_environment`, before torch loads its
    OpenMP runtime; a value the user set is kept), so threads waiting for work sleep rather than spin;
  - sets torch's intra-op threads to N and inter-op threads to at most N; DataLoader workers run one
    torch thread each (torch sets them so) and decode with one FFmpeg thread; FFmpeg outside the
    workers decodes with at most N (data/decode.py);
  - records the setting in the run's provenance (infra/provenance.py: `threads`, `threads_source`, ...).

`threads_option()` is the one option definition every computing command shares; its callback applies
the setting while the command line is parsed, before the command's body runs.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
import inspect
import os
import sys
from typing import Optional

from .errors import MocohdError

THREADS_ENV = "MOCOHD_THREADS"
# The default never goes above this many threads: beyond it the small models mocohd trains on a CPU gain
# little, and a wide default is what collapses first when the machine is shared.
DEFAULT_MAX = 8
WAIT_POLICY_ENV = "OMP_WAIT_POLICY"
OMP_THREADS_ENV = "OMP_NUM_THREADS"


@dataclass(frozen=True)
class ThreadSetting:
    """What a command runs with, as provenance records it."""

    threads: int  # torch intra-op threads
    interop_threads: int  # torch inter-op threads
    source: str  # "--threads", "$MOCOHD_THREADS", "$OMP_NUM_THREADS" or "default (...)"
    omp_wait_policy: str | None  # OMP_WAIT_POLICY as the OpenMP runtime read it at start (None: unset)
    cores: int  # physical cores this process may use
    load: float | None  # 1-minute load average when the setting was chosen (None: unknown)


_applied: ThreadSetting | None = None
_wait_policy_at_start: str | None = os.environ.get(WAIT_POLICY_ENV)
_omp_threads_at_start: str | None = os.environ.get(OMP_THREADS_ENV)  # the user's, before torch's import


def prepare_environment() -> None:
    """OMP_WAIT_POLICY=PASSIVE unless the user set one, when torch is not loaded yet: libgomp reads it once,
    as torch loads it. Called first thing by `import mocohd_cli` (so by the CLI, and by a program importing
    mocohd before torch; one that wants spinning threads sets OMP_WAIT_POLICY=ACTIVE itself)."""
    global _wait_policy_at_start
    if "torch" not in sys.modules:
        os.environ.setdefault(WAIT_POLICY_ENV, "PASSIVE")
    _wait_policy_at_start = os.environ.get(WAIT_POLICY_ENV)


def usable_cores() -> int:
    """Physical cores among the CPUs this process may run on (affinity); hyper-threads count once."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)
    siblings: set[str] = set()
    for cpu in cpus:
        try:
            with open(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list", encoding="ascii") as f:
                siblings.add(f.read().strip())
        except OSError:
            siblings.add(str(cpu))
    return max(1, len(siblings))


def _load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def default_threads(cores: int | None = None, load: float | None = None) -> int:
    """One thread per core (at most DEFAULT_MAX), less one for each whole unit of load beyond the cores'
    less one: 2 cores take 2 threads under a load below 2, 1 from 2 on. Called before this process
    computes anything, so the load is the others'.

    Measured on 2 cores (benchmarks/threads.py, docs/threads.md): with the passive wait policy, one
    thread per core is 1.5x faster than one thread under a load of about 1 and about even beside one
    busy process; only an oversubscribed machine (load at or above the cores) favours fewer threads."""
    cores = usable_cores() if cores is None else cores
    beyond = 0 if load is None or load < cores else int(load) - cores + 1
    return max(1, min(DEFAULT_MAX, cores) - beyond)


def parse_threads(value: object, where: str) -> int:
    """A thread count from the command line or the environment: a whole number >= 1."""
    try:
        threads = int(str(value).strip())
    except ValueError:
        threads = 0
    if threads < 1 or str(value).strip() != str(threads):
        raise MocohdError(f"{where} must be a whole number >= 1, got {value!r}",
                          fix=f"pass --threads N (or set {THREADS_ENV}=N), e.g. 1 on a busy machine")
    return threads


def choose_threads(option: int | None = None) -> tuple[int, str, float | None]:
    """(threads, where they come from, load average seen) for `--threads` (None: not given)."""
    if option is not None:
        return parse_threads(option, "--threads"), "--threads", None
    for name, value in ((THREADS_ENV, os.environ.get(THREADS_ENV)), (OMP_THREADS_ENV, _omp_threads_at_start)):
        if value is not None and value.strip():
            return parse_threads(value, f"${name}"), f"${name}", None
    cores, load = usable_cores(), _load_average()
    threads = default_threads(cores, load)
    return threads, f"default ({cores} cores, load {load:.2f})" if load is not None else f"default ({cores} cores)", load


def apply_threads(option: int | None = None) -> ThreadSetting:
    """Choose the threads (`choose_threads`) and set them in torch."""
    import torch  # here, not at the top: prepare_environment must run before torch loads OpenMP

    global _applied
    threads, source, load = choose_threads(option)
    torch.set_num_threads(threads)
    interop = min(threads, torch.get_num_interop_threads())
    if interop != torch.get_num_interop_threads():
        try:
            torch.set_num_interop_threads(interop)
        except RuntimeError:  # only settable before the first inter-op work (a second command in one process)
            interop = torch.get_num_interop_threads()
    _applied = ThreadSetting(threads=threads, interop_threads=interop, source=source,
                             omp_wait_policy=_wait_policy_at_start, cores=usable_cores(), load=load)
    return _applied


def applied() -> ThreadSetting | None:
    """The setting the current command applied (None: none did, e.g. a program using the library)."""
    return _applied


def provenance_fields() -> dict:
    """The thread setting as provenance.toml records it: the applied one, else torch's current threads."""
    import torch

    if _applied is not None:
        return {f"threads_{k}" if k != "threads" else k: v for k, v in asdict(_applied).items() if v is not None}
    return {"threads": torch.get_num_threads(), "threads_source": "torch (not set by mocohd)"}


def max_decode_threads() -> int:
    """Threads FFmpeg may decode with outside DataLoader workers (0: its own choice, all cores)."""
    return _applied.threads if _applied is not None else 0


def _option_callback(value: Optional[int]) -> Optional[int]:
    apply_threads(value)
    return value


THREADS_HELP = (f"CPU threads for torch (also ${THREADS_ENV}). Default: one per core, at most {DEFAULT_MAX}, "
                "fewer on a busy machine (docs/threads.md).")


def threads_typer_option():
    """`--threads N`, the one definition every computing command shares (a typer.Option, for a command's
    signature: `threads: Optional[int] = threads_typer_option()`). Its callback applies the setting while
    the command line is parsed, given or not, so before the command's body runs."""
    import typer

    return typer.Option(None, "--threads", min=1, callback=_option_callback, is_eager=True, show_default=False,
                        help=THREADS_HELP)


def threads_option():
    """`threads_typer_option` as a parameter for commands built from a parameter list
    (mocohd_cli/commands/options.py config_command, which drops the value before the command runs)."""
    return inspect.Parameter("threads", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[int],
                             default=threads_typer_option())


__all__ = ["DEFAULT_MAX", "THREADS_ENV", "ThreadSetting", "applied", "apply_threads", "choose_threads",
           "default_threads", "prepare_environment", "provenance_fields", "threads_option", "threads_typer_option",
           "usable_cores"]
