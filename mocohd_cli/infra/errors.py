"""User-facing errors: one clear message that names the file and the fix."""
from __future__ import annotations

import reprlib
from pathlib import Path

# How messages show values that came from files: a few items, a few levels, short strings, so a
# hostile structure (2**60 shared tuples) costs no more to show than a small one.
_BRIEF = reprlib.Repr()  # (keyword arguments only from Python 3.12)
_BRIEF.maxlevel, _BRIEF.maxstring, _BRIEF.maxlong, _BRIEF.maxother = 2, 60, 40, 60
_BRIEF.maxtuple = _BRIEF.maxlist = _BRIEF.maxdict = _BRIEF.maxset = _BRIEF.maxfrozenset = 4


def brief(value: object) -> str:
    """A short repr of a value from a file, for error messages."""
    return _BRIEF.repr(value)


def brief_keys(mapping: object, count: int = 8) -> str:
    """The first few keys of a mapping (as text), for messages such as "its keys: a, b, c, ..."."""
    keys = [brief(key) if not isinstance(key, str) else key[:60] for _, key in zip(range(count), mapping)]
    more = ", ..." if len(mapping) > count else ""
    return (", ".join(keys) + more) or "none"


class MocohdError(Exception):
    """An error caused by the user's input. The CLI prints it without a traceback, exit 2."""

    exit_code = 2

    def __init__(self, message: str, *, path: str | Path | None = None, fix: str | None = None):
        """path: the file (or URL) the error is about; shown first."""
        self.message = message
        # a URL stays as written: Path() would fold its "//" into "/" (https:/host/...)
        self.path = path if isinstance(path, str) and "://" in path else Path(path) if path is not None else None
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
