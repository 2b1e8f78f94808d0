"""Settings dataclasses that double as command-line definitions.

A configuration dataclass (TrainConfig, the StyleGAN2 PretrainConfig, ...) declares each knob
once with `setting(default, help)`; mocohd_cli/commands/options.py turns the fields into a
command's options, with the default read from the field. So a default lives in one place and no
help text restates it by hand.
"""
from __future__ import annotations

import dataclasses
from typing import Any


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
    from .errors import MocohdError

    names = {f.name for f in dataclasses.fields(cls)}
    clean = {}
    for key, value in values.items():
        name = key.replace("-", "_")
        if name not in names:
            raise MocohdError(f"unknown {what} option {key!r}", path=source,
                              fix=f"known options: {', '.join(sorted(names))}")
        clean[name] = value
    return cls(**clean)


def require_positive(settings, names) -> None:
    """Each named count of `settings` is >= 1 (None: not set, fine), or one clear error naming its option."""
    from .errors import MocohdError

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
        shown = ("on" if value else "off") if isinstance(value, bool) else f"{value:g}" if isinstance(value, float) \
            else str(value)
    return f"{meta['help']} (default: {shown})"
