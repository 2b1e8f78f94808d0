"""User-facing errors: one clear message that names the file and the fix."""
from __future__ import annotations

from pathlib import Path


class MocohdError(Exception):
    """An error caused by the user's input. The CLI prints it without a traceback, exit 2."""

    exit_code = 2

    def __init__(self, message: str, *, path: str | Path | None = None, fix: str | None = None):
        self.message = message
        self.path = Path(path) if path is not None else None
        self.fix = fix
        super().__init__(self.render())

    def render(self) -> str:
        text = f"{self.path}: {self.message}" if self.path is not None else self.message
        if self.fix:
            text += f"\n  fix: {self.fix}"
        return text


class MocohdWarning(UserWarning):
    """Something the user should know that does not stop the work (a motion model loaded with other
    backbone weights than it was trained with, ...). Python callers silence these with
    `warnings.simplefilter("ignore", MocohdWarning)`; the CLI shows them on stderr."""
