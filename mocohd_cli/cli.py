"""The `mocohd` command line. Commands live in mocohd_cli/commands/, one module each; every
module there is imported here and registers its commands on `app`. Commands hold no model logic.

Plugins add commands through the entry-point group "mocohd.commands": each entry point names a
function `register(app)`, called after the built-in commands are in place. A plugin command that
fails to load is reported in one line on stderr; the other commands work as usual.
"""
from __future__ import annotations

import importlib
import importlib.metadata as metadata
import pkgutil
import sys

import typer

from .app import app

COMMANDS_GROUP = "mocohd.commands"


def _register_commands() -> None:
    from . import commands

    for module in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        importlib.import_module(f"{commands.__name__}.{module.name}")


def register_plugin_commands(target: typer.Typer) -> list[str]:
    """Call `register(target)` of every entry point in the "mocohd.commands" group; returns the
    names of those that loaded. A broken plugin gets a one-line warning on stderr."""
    loaded: list[str] = []
    seen: set[str] = set()
    for ep in metadata.entry_points(group=COMMANDS_GROUP):
        if ep.name in seen:  # first registration wins (duplicate dists in editable installs)
            continue
        seen.add(ep.name)
        try:
            ep.load()(target)
            loaded.append(ep.name)
        except Exception as exc:  # a broken plugin must never break the other commands
            reason = (str(exc).strip().splitlines() or [""])[0]
            print(f"warning: plugin command {ep.name!r} ({ep.value}) is unavailable: "
                  f"{type(exc).__name__}{': ' + reason if reason else ''}", file=sys.stderr)
    return loaded


_register_commands()
register_plugin_commands(app)


def main() -> None:
    app()


__all__ = ["app", "main", "register_plugin_commands"]
