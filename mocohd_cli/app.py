"""The Typer application every command registers on (`from mocohd_cli.app import app`).

Kept apart from cli.py, which imports every command module: a command module can then be
imported on its own (or import another command module) without an import cycle.

The library reports through `logging` (loggers under "mocohd_cli" and "mocohd_plugins") and
`warnings` (MocohdWarning); it never configures either. Each invocation of the app renders them
on stderr with rich for its duration (`cli_logging`), so a Python program that imports mocohd keeps
its own logging set-up and can silence mocohd as it silences any library.
"""
from __future__ import annotations

from contextlib import contextmanager
import logging
from typing import Iterator
import warnings

from rich.logging import RichHandler
import typer
from typer.core import TyperGroup

from .infra.console import console
from .infra.errors import MocohdError, MocohdWarning
from .infra.version import __version__

_state = {"debug": False}
LOGGERS = ("mocohd_cli", "mocohd_plugins")

# The panels `mocohd --help` groups the commands into (Typer's rich_help_panel); plugins use them too.
PANEL_GENERATE = "generate"
PANEL_TRAIN = "train"
PANEL_EVALUATE = "evaluate"
PANEL_MODELS = "models and data"
PANELS = (PANEL_GENERATE, PANEL_TRAIN, PANEL_EVALUATE, PANEL_MODELS)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """warnings.showwarning for the CLI: one log record, no source line."""
    text = str(message) if issubclass(category, MocohdWarning) else f"{category.__name__}: {message}"
    logging.getLogger(LOGGERS[0]).warning(text)


@contextmanager
def cli_logging(level: int = logging.INFO) -> Iterator[None]:
    """mocohd's log records and warnings rendered by rich on stderr (the progress bars' console),
    for the duration of the block; the previous set-up is restored afterwards."""
    handler = RichHandler(console=console, show_time=False, show_path=False, markup=False,
                          rich_tracebacks=False)
    loggers = [logging.getLogger(name) for name in LOGGERS]
    saved = [(logger.level, logger.propagate) for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = False  # shown once, here, even where the root logger has handlers too
    show = warnings.showwarning
    warnings.showwarning = _show_warning
    try:
        yield
    finally:
        warnings.showwarning = show
        for logger, (old_level, propagate) in zip(loggers, saved):
            logger.removeHandler(handler)
            logger.setLevel(old_level)
            logger.propagate = propagate


def _flags_without_type(command) -> None:
    """Typer's help gives every option a type column; a flag (--help included) takes no value, so its
    `<bool>` (or a field's FILE metavar where a command makes the field a flag) would only mislead.
    An empty metavar leaves the column blank. Walks the whole command tree, plugins' commands too."""
    help_option = command.get_help_option(typer.Context(command))
    for param in [*command.params, *([help_option] if help_option else [])]:
        if getattr(param, "is_flag", False) and not getattr(param, "count", False):
            param.metavar = ""
    for sub in getattr(command, "commands", {}).values():
        _flags_without_type(sub)


class _UserErrorsAsMessages(TyperGroup):
    """A MocohdError becomes one message on stderr and exit code 2 (a traceback only with --debug).

    Done in the command group rather than around `app()` so that every way of invoking the app
    (console script, `python -m mocohd_cli`, torchrun, typer's test runner) behaves the same; the
    same goes for the log rendering set up in `main`.
    """

    def main(self, *args, **kwargs):
        _flags_without_type(self)  # here, not in __init__: typer adds the completion flags after that
        with cli_logging():
            return super().main(*args, **kwargs)

    def list_commands(self, ctx):
        """Commands in panel order (PANELS), then as registered: `mocohd --help` reads top-down."""
        order = {panel: index for index, panel in enumerate(PANELS)}
        return sorted(super().list_commands(ctx),
                      key=lambda name: order.get(getattr(self.commands[name], "rich_help_panel", None), -1))

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except MocohdError as exc:
            if _state["debug"]:
                raise
            typer.echo(f"error: {exc.render()}", err=True)
            ctx.exit(exc.exit_code)


app = typer.Typer(
    name="mocohd",
    cls=_UserErrorsAsMessages,
    help="Turn a frozen pre-trained image generator into a video generator (MoCoGAN-HD).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"mocohd {__version__}")
        raise typer.Exit()


@app.callback()
def _global_options(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks for errors, and debug messages."),
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                 help="Print mocohd's version and exit."),
) -> None:
    _state["debug"] = debug
    if debug:
        for name in LOGGERS:
            logging.getLogger(name).setLevel(logging.DEBUG)
