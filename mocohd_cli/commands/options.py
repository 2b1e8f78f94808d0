"""Command-line options built from the settings dataclasses (mocohd_cli/infra/settings.py).

`options_from(Config, ...)` makes one keyword parameter per field, typed as the field is, with
the field's help and its default as the help shows it. The option's own default is None, so a
command can tell what was given (and layer it over presets, resumed runs and config files).
`config_command` registers a command whose signature is those parameters plus a few of its own.
"""
from __future__ import annotations

import dataclasses
import enum
import inspect
from pathlib import Path
import types
import typing
from typing import Any, Callable, Optional

import typer

from ..data.video import FORMATS
from ..infra.device import DEVICES
from ..infra.hub import resolve
from ..infra.settings import help_of
from ..models.backbone import NOISE_MODES

# What an option takes, by field name, for the settings fields that do not declare a metavar or choices
# themselves: the help shows PATH or NAME rather than <str>, and the fixed choices that typer then enforces.
_METAVARS = {"backbone": "NAME", "arch": "NAME", "embedder": "NAME", "checkpoint": "PATH", "motion": "PATH",
             "encoder": "PATH", "real": "PATH", "fake": "PATH", "data": "PATH", "out": "PATH",
             "encoder_weights": "FILE", "embedder_weights": "FILE", "latents": "FILE", "save_latents": "FILE",
             "classes": "CLASS", "metrics": "METRIC", "detectors": "NAME=PATH", "domain": "NAME",
             "decomposition": "R C", "lerp": "A B"}
_CHOICES = {"device": DEVICES, "noise": NOISE_MODES, "format": FORMATS}


def _optional(kind: Any) -> Any:
    """`T`, `T | None` or `Optional[T]` -> Optional[T] (every generated option may be absent)."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        members = [m for m in typing.get_args(kind) if m is not type(None)]
        kind = members[0] if len(members) == 1 else kind
    return Optional[kind]


def options_from(config_cls: type, *, include: Callable[[dataclasses.Field], bool] = lambda f: True,
                 rename: dict[str, tuple[str, str]] | None = None) -> list[inspect.Parameter]:
    """Keyword parameters for the fields of `config_cls` that `include` accepts.

    rename: field -> (parameter name, help) for a command that names a field after what it holds
    there (transfer's --image-domain for `checkpoint`)."""
    hints = typing.get_type_hints(config_cls)
    parameters = []
    for field in dataclasses.fields(config_cls):
        meta = field.metadata
        if not meta or not meta.get("cli", True) or not include(field):
            continue
        name, help_text = field.name, help_of(field)
        if rename and field.name in rename:
            name, help_text = rename[field.name]
        flags = meta.get("flag") if not (rename and field.name in rename) else None
        flags = flags or "--" + name.replace("_", "-")
        flags = (flags,) if isinstance(flags, str) else tuple(flags)
        choices = meta.get("choices") or (_CHOICES.get(field.name) if hints[field.name] in (str, str | None) else None)
        kind = _optional(choice_type(field.name, choices) if choices else meta.get("cli_type") or hints[field.name])
        metavar = meta.get("metavar") or (None if choices else _METAVARS.get(field.name))
        extra = {"metavar": metavar} if metavar else {}
        if kind is Optional[bool] and len(flags) == 1 and "/" not in flags[0]:
            if field.default is True:  # on by default: the option turns it off (and --flag states the default)
                flags = (f"{flags[0]}/--no-{flags[0][2:]}",)
            # off by default: one name, a plain flag (no --no- twin)
        option = typer.Option(None, *flags, help=help_text, show_default=False,
                              rich_help_panel=meta.get("group"), **extra)
        parameters.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=kind, default=option))
    return parameters


def choice_type(name: str, values: tuple[str, ...]) -> type[enum.Enum]:
    """A str Enum of a field's fixed choices: the help lists them and typer refuses anything else
    (`given_values` turns the member back into its string)."""
    return enum.Enum(name.title().replace("_", ""), {value: value for value in values}, type=str)


def extra_option(name: str, kind: Any, option: Any) -> inspect.Parameter:
    """A command's own option that is not a settings field."""
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=kind, default=option)


def labels_option() -> inspect.Parameter:
    """--labels FILE, for the commands that take --class names."""
    return extra_option("labels", Optional[Path], typer.Option(None, metavar="FILE",
                                                               help="Class-name file (one name per line, or "
                                                               "JSON) for --class names."))


# Settings fields resolved here when they hold a reference (hf://, zoo:, example:; mocohd_cli/infra/hub.py):
# the motion model, the inversion encoder (animate, eval), train-encoder's starting weights, a latents file.
# Checkpoints are resolved where they are loaded (load_backbone), so a run's config.toml keeps the reference.
REFERENCE_FIELDS = ("motion", "encoder", "encoder_weights", "latents")


def given_values(values: dict) -> dict:
    """What was given on the command line, as settings values: absent options (None) left out,
    paths as strings (the settings dataclasses and TOML files hold strings), references of
    REFERENCE_FIELDS resolved to local paths."""
    given = {k: (str(v) if isinstance(v, Path) else v.value if isinstance(v, enum.Enum) else v)
             for k, v in values.items() if v is not None}
    return {k: resolve(v) if k in REFERENCE_FIELDS else v for k, v in given.items()}


def config_command(app: typer.Typer, name: str, parameters: list[inspect.Parameter], *, help: str,
                   panel: str | None = None):
    """Register `run(values)` as command `name` taking `parameters`; `values` maps each parameter
    name to what was given (None when absent). panel: the --help panel (mocohd_cli.app.PANELS)."""
    def decorate(run: Callable[[dict], None]) -> Callable[[dict], None]:
        def command(**values) -> None:
            values.pop("threads", None)  # applied while the command line was parsed (infra/threads.py threads_option)
            run(values)

        command.__signature__ = inspect.Signature(parameters, return_annotation=None)
        command.__doc__ = help
        command.__name__ = f"{name.replace('-', '_')}_command"
        app.command(name, rich_help_panel=panel)(command)
        return run

    return decorate
