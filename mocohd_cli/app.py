"""The Typer application every command registers on (`from mocohd_cli.app import app`).

Kept apart from cli.py, which imports every command module: a command module can then be
imported on its own (or import another command module) without an import cycle."""
from __future__ import annotations


import typer
from typer.core import TyperGroup

from .infra.errors import MocohdError

_state = {"debug": False}


class _UserErrorsAsMessages(TyperGroup):
    """A MocohdError becomes one message on stderr and exit code 2 (a traceback only with --debug).

    Done in the command group rather than around `app()` so that every way of invoking the app
    (console script, `python -m mocohd_cli`, torchrun, typer's test runner) behaves the same.
    """

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
    add_completion=False,
)


@app.callback()
def _global_options(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks for errors."),
) -> None:
    _state["debug"] = debug
