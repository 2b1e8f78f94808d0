"""The `mocohd` command line. Commands live in mocohd_cli/commands/, one module each; every
module there is imported here and registers its commands on `app`. Commands hold no model logic."""
from __future__ import annotations

import importlib
import pkgutil

from .app import app


def _register_commands() -> None:
    from . import commands

    for module in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        importlib.import_module(f"{commands.__name__}.{module.name}")


_register_commands()


def main() -> None:
    app()


__all__ = ["app", "main"]
