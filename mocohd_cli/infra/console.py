"""Shared rich console and progress bars: rate and ETA on every long loop; quiet in CI."""
from __future__ import annotations

import os
import sys

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)
from rich.text import Text

console = Console(stderr=True)


class RateColumn(ProgressColumn):
    """Iterations per second (or seconds per iteration when slower than 1/s)."""

    def render(self, task) -> Text:
        speed = task.finished_speed or task.speed
        if not speed:
            return Text("-- it/s")
        return Text(f"{speed:.2f} it/s" if speed >= 1 else f"{1 / speed:.1f} s/it")


def quiet() -> bool:
    return bool(os.environ.get("CI")) or not sys.stderr.isatty()


def progress(*extra_columns) -> Progress:
    """A progress bar with count, rate, elapsed and ETA; disabled when not on a terminal or in CI."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        *extra_columns,
        console=console,
        disable=quiet(),
    )
