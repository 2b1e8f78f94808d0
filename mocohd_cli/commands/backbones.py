"""`mocohd backbones`: what image generators are installed, and from which distribution."""
from __future__ import annotations

from rich.console import Console
from rich.table import Table

from ..models.backbone import discover_backbones
from ..app import PANEL_MODELS, app


@app.command("backbones", rich_help_panel=PANEL_MODELS)
def list_backbones() -> None:
    """List installed image-generator backbones (plugins of the entry-point group mocohd.backbones).

    Example:

      mocohd backbones
    """
    table = Table(title="mocohd backbones")
    for column in ("name", "distribution", "description"):
        table.add_column(column)
    for entry in discover_backbones().values():
        text = entry.description if entry.error is None else f"[red]failed to import: {entry.error}[/red]"
        table.add_row(entry.name, entry.distribution, text)
    Console(width=160).print(table)
