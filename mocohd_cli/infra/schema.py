"""Typed, bounded reading of values that come from files (safetensors metadata, config.json,
training states, TOML): every value is checked for its type and range where it enters, and every
violation is one MocohdError naming the file and the key.

A `Field` describes one value; `read_fields` checks a mapping against a tuple of them:

    MOTION_FIELDS = (Field("latent_dim", int, lo=1, hi=65_536), Field("w_residual", float, lo=0, hi=100))
    values = read_fields(metadata, MOTION_FIELDS, source=path, what="motion model metadata")
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from .errors import MocohdError, brief

MAX_TEXT = 4096  # characters of a string value (paths, names)
MAX_METADATA_VALUE = 1 << 20  # characters of one metadata entry before it is decoded
_MISSING = object()


@dataclass(frozen=True)
class Field:
    """One value: its key, type (int, float, str, bool, list or dict), bounds and default.

    Ints must be ints (not bools, not 2.5); floats may be given as ints and must be finite;
    `lo`/`hi` bound numbers and, for str/list/dict, their length (hi only)."""

    key: str
    kind: type
    lo: float | None = None
    hi: float | None = None
    default: Any = _MISSING
    choices: tuple | None = None

    @property
    def required(self) -> bool:
        return self.default is _MISSING


def check_value(field: Field, value: Any, *, source: Path | str | None, what: str) -> Any:
    """`value` converted to the field's type, or a MocohdError naming the file and the key."""
    def bad(expected: str) -> MocohdError:
        return MocohdError(f"{what}: {field.key!r} must be {expected}, got {brief(value)}", path=source,
                           fix="the file is damaged or was edited by hand; re-create it, or correct this value")

    kind = field.kind
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("an integer")
    elif kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad("a number")
        value = float(value)
        if not math.isfinite(value):
            raise bad("a finite number")
    elif kind is str:
        if not isinstance(value, str):
            raise bad("a string")
    elif not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise bad(f"a {kind.__name__}")
    if kind in (int, float):
        lo = -math.inf if field.lo is None else field.lo
        hi = math.inf if field.hi is None else field.hi
        if not lo <= value <= hi:
            raise bad(f"in [{lo:g}, {hi:g}]")
    elif kind in (str, list, dict):
        limit = field.hi if field.hi is not None else (MAX_TEXT if kind is str else math.inf)
        if len(value) > limit:
            raise bad(f"at most {int(limit)} {'characters' if kind is str else 'entries'} long")
    if field.choices is not None and value not in field.choices:
        raise bad(f"one of {', '.join(map(str, field.choices))}")
    return value


def read_fields(values: Mapping[str, Any], fields: tuple[Field, ...], *, source: Path | str | None,
                what: str) -> dict[str, Any]:
    """The declared fields of `values`, checked; absent optional ones get their default. Keys not
    declared are left out (metadata may carry free-form extras)."""
    if not isinstance(values, Mapping):
        raise MocohdError(f"{what} must be a mapping of names to values, got a {type(values).__name__}",
                          path=source, fix="the file is damaged or is not the kind of file expected here")
    out = {}
    for field in fields:
        if field.key not in values or values[field.key] is None:
            if field.required:
                raise MocohdError(f"{what} has no {field.key!r}", path=source,
                                  fix="the file is damaged or is not the kind of file expected here")
            out[field.key] = field.default
            continue
        out[field.key] = check_value(field, values[field.key], source=source, what=what)
    return out


def decode_metadata(raw: Mapping[str, str], *, source: Path | str | None, what: str) -> dict[str, Any]:
    """safetensors metadata (all strings) with JSON values decoded; a value that is not JSON stays
    a string (names, paths), and one too long to be metadata is an error."""
    out = {}
    for key, value in raw.items():
        if len(value) > MAX_METADATA_VALUE:
            raise MocohdError(f"{what}: the value of {key[:80]!r} is {len(value):,} characters long", path=source,
                              fix="the file is damaged or was edited; re-create it")
        try:
            out[key] = json.loads(value)
        except (ValueError, RecursionError):  # ValueError also covers ints beyond Python's digit limit
            out[key] = value
    return out
