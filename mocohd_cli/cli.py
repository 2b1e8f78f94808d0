"""The `mocohd` command line. Commands live in mocohd_cli/commands/, one module each; every
module there is imported and registers its commands on `app`. Commands hold no model logic."""
from __future__ import annotations

import importlib
import pkgutil
import sys

import typer

from .errors import MocohdError

app = typer.Typer(
    name="mocohd",
    help="Turn a frozen pre-trained image generator into a video generator (MoCoGAN-HD).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

_state = {"debug": False}


@app.callback()
def _global_options(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks for errors."),
) -> None:
    _state["debug"] = debug


def _register_commands() -> None:
    from . import commands

    for module in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        importlib.import_module(f"{commands.__name__}.{module.name}")


_register_commands()


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors print one message and exit 2; --debug shows the traceback."""
    debug = "--debug" in (argv if argv is not None else sys.argv)
    try:
        app(args=argv, standalone_mode=True)
    except MocohdError as exc:
        if debug:
            raise
        typer.echo(f"error: {exc.render()}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
