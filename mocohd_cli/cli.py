"""The `mocohd` command line. Commands live in mocohd_cli/commands/, one module each; every
module there is imported here and registers its commands on `app`. Commands hold no model logic.

Plugins add commands through the entry-point group "mocohd.commands": each entry point names a
function `register(app)`, called after the built-in commands are in place. A plugin command that
fails to load is reported in one warning line on stderr; the other commands work as usual. Plugin
commands pick their help panel from mocohd_cli.app.PANELS (`rich_help_panel=`).
"""
from __future__ import annotations

import importlib
import importlib.metadata as metadata
import logging
import pkgutil

import typer

from . import commands
from .app import app, cli_logging

log = logging.getLogger(__name__)

COMMANDS_GROUP = "mocohd.commands"


def _register_commands() -> None:
    for module in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        importlib.import_module(f"{commands.__name__}.{module.name}")


def register_plugin_commands(target: typer.Typer) -> list[str]:
    """Call `register(target)` of every entry point in the "mocohd.commands" group; returns the
    names of those that loaded. A broken plugin gets a one-line warning (logged)."""
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
            log.warning("plugin command %r (%s) is unavailable: %s%s", ep.name, ep.value, type(exc).__name__,
                        f": {reason}" if reason else "")
    return loaded


_register_commands()
with cli_logging():  # plugins load before any invocation: show their warnings as the CLI shows any
    register_plugin_commands(app)


def main() -> None:
    app()


__all__ = ["app", "main", "register_plugin_commands"]
