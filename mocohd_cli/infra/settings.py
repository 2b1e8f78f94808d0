"""Settings dataclasses that double as command-line definitions.

A configuration dataclass (TrainConfig, the StyleGAN2 PretrainConfig, ...) declares each knob
once with `setting(default, help)`; mocohd_cli/commands/options.py turns the fields into a
command's options, with the default read from the field. So a default lives in one place and no
help text restates it by hand.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any

from .errors import MocohdError

MAX_INT = 2**63 - 1  # what torch's seeds and counters hold


def torch_seed(value: int) -> int:
    """A seed torch accepts, from any integer derived from --seed (small ones unchanged)."""
    return value % 2**63


def setting(default: Any, help: str, *, flag: str | None = None, default_text: str | None = None,
            cli: bool = True, cli_type: Any = None, **extra) -> Any:
    """A dataclass field with its command-line description.

    flag: the option's name when it is not --field-name; default_text: how the help states a
    default that is computed rather than stored (None fields); cli: False for fields the tool
    sets itself; cli_type: the type the option parses when it differs from the field's
    (e.g. class names that become indices); extra: what a command family filters on.
    """
    metadata = {"help": help, "flag": flag, "default_text": default_text, "cli": cli, "cli_type": cli_type, **extra}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def settings_from_dict(cls: type, values: dict, *, what: str, source=None):
    """A settings dataclass from (for example TOML) values: dashes in keys are accepted, unknown
    keys are an error that lists the known ones."""
    names = {f.name for f in dataclasses.fields(cls)}
    clean = {}
    for key, value in values.items():
        name = key.replace("-", "_")
        if name not in names:
            raise MocohdError(f"unknown {what} option {key!r}", path=source,
                              fix=f"known options: {', '.join(sorted(names))}")
        clean[name] = value
    settings = cls(**clean)
    check_setting_types(settings, source=source, given=set(clean))
    return settings


_TYPE_WORDS = {int: "an integer", float: "a number", str: "a string", bool: "true or false", list: "a list",
               dict: "a table"}


def _accepted(hint: Any) -> tuple[tuple, bool]:
    """(the types a field's annotation accepts, whether None is allowed)."""
    members = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    optional = type(None) in members
    kinds = tuple(typing.get_origin(m) or m for m in members if m is not type(None))
    return kinds, optional


def _list_item_type(hint: Any) -> type | None:
    """int for `list[int] | None`, None when the list's items are not declared."""
    members = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    for member in members:
        if typing.get_origin(member) is list and typing.get_args(member):
            return typing.get_args(member)[0]
    return None


def check_setting_types(settings, *, source=None, given: set[str] | None = None) -> None:
    """Every field of a settings dataclass holds a value of its annotated type: ints are whole
    numbers within 64 bits (not bools, not 2.5), floats are finite (ints are accepted and
    converted), strings are strings. For values from TOML files and the command line alike; one
    clear error names the option (and the file)."""
    hints = typing.get_type_hints(type(settings))
    for field in dataclasses.fields(settings):
        if given is not None and field.name not in given:
            continue
        value = getattr(settings, field.name)
        kinds, optional = _accepted(hints[field.name])
        if value is None and optional:
            continue
        name = field.name.replace("_", "-")
        flag = field.metadata.get("flag") or f"--{name}"
        flag = flag if isinstance(flag, str) else flag[0]
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."

        def bad(expected: str) -> MocohdError:
            return MocohdError(f"setting {name!r} must be {expected}, got {shown}", path=source,
                               fix=f"give {flag} (or `{field.name} = ...` in the TOML file) {expected}")

        if isinstance(value, bool):
            if bool not in kinds:
                raise bad(" or ".join(_TYPE_WORDS.get(k, k.__name__) for k in kinds))
        elif isinstance(value, int) and int in kinds:
            if abs(value) > MAX_INT:
                raise bad(f"an integer of at most {MAX_INT}")
        elif isinstance(value, (int, float)) and float in kinds:
            if not math.isfinite(value):
                raise bad("a finite number")
            setattr(settings, field.name, float(value))
        elif isinstance(value, list) and list in kinds:
            item = _list_item_type(hints[field.name])
            if item is not None and not all(isinstance(v, item) and not isinstance(v, bool) for v in value):
                raise bad(f"a list of {_TYPE_WORDS.get(item, item.__name__).split(' ', 1)[-1]}s")
        elif not isinstance(value, kinds):
            raise bad(" or ".join(_TYPE_WORDS.get(k, k.__name__) for k in kinds) + (" (or left out)" if optional else ""))


def require_positive(settings, names) -> None:
    """Each named count of `settings` is >= 1 (None: not set, fine), or one clear error naming its option."""
    for name in names:
        value = getattr(settings, name)
        if value is not None and value < 1:
            raise MocohdError(f"--{name.replace('_', '-')} must be >= 1, got {value}", fix="use a positive value")


def default_of(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None


def help_of(field: dataclasses.Field) -> str:
    """The field's help with its default, as the command line shows it."""
    meta = field.metadata
    shown = meta.get("default_text")
    if shown is None:
        value = default_of(field)
        if value is None or value == {} or value == []:
            return meta["help"]
        shown = show_value(value)
    return f"{meta['help']} (default: {shown})"


def show_value(value: Any) -> str:
    """A default as the command line shows it: switches on/off, floats without trailing zeros."""
    return ("on" if value else "off") if isinstance(value, bool) else f"{value:g}" if isinstance(value, float) \
        else str(value)
