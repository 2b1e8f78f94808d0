"""`mocohd zoo list|get`: known public checkpoints (mocohd_cli/workflows/zoo.py)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from rich.console import Console
from rich.markup import escape
from rich.table import Table
import typer

from ..app import PANEL_MODELS, app
from ..infra.console import console
from ..workflows.builtin import example_backbones, shipped_example_motions
from ..workflows.zoo import CONVERSIONS, ZOO, artefact_path, fetch, fetched, get_entry

zoo_app = typer.Typer(help="Known public checkpoints: list them, fetch one into the cache (checked and converted).\n\n"
                           "Examples:\n\n  mocohd zoo list\n\n  mocohd zoo get NAME",
                      no_args_is_help=True)
app.add_typer(zoo_app, name="zoo", rich_help_panel=PANEL_MODELS)


@zoo_app.command("list")
def list_zoo() -> None:
    """List the zoo: what each entry is, its licence, whether its sha256 is verified, what fetching
    it converts, and whether it is in the cache. Use an entry as `--checkpoint zoo:NAME`; `example:NAME`
    is the shipped backbone as --checkpoint and its trained motion model as --motion."""
    table = Table(title="mocohd zoo (use as zoo:NAME; `mocohd zoo get NAME` fetches one)")
    for column in ("name", "kind", "what", "px", "license", "sha256", "converting", "in the cache"):
        table.add_column(column)
    for entry in ZOO.values():
        sha = "verified" if entry.verified else "[yellow]UNVERIFIED[/yellow] (needs --sha256 or --trust-unverified)"
        what = entry.description + (f" (backbone: {entry.backbone})" if entry.backbone else "")
        table.add_row(entry.name, entry.kind, escape(what), str(entry.resolution), escape(entry.license),
                      sha, escape(CONVERSIONS[entry.convert]),
                      escape(str(artefact_path(entry))) if fetched(entry) else "-")
    motions = shipped_example_motions()
    for name, path in example_backbones().items():
        table.add_row(f"example:{name}", "backbone", "example StyleGAN2 shipped with mocohd (--checkpoint)", "64",
                      "MIT (mocohd)", "shipped", "none", escape(str(path)))
        if name in motions:
            table.add_row(f"example:{name}", "motion", "its trained motion model, shipped (--motion)", "64",
                          "MIT (mocohd)", "shipped", "none", escape(str(motions[name])))
    Console(width=200).print(table)


@zoo_app.command("get")
def get(
    name: str = typer.Argument(..., metavar="NAME", help="Zoo entry (see `mocohd zoo list`)."),
    source: Optional[Path] = typer.Option(None, "--from", metavar="PATH", help="Use local files instead of downloading: the file, or "
                                          "the folder holding the entry's files (docs/models_and_hub.md)."),
    sha256: Optional[list[str]] = typer.Option(None, "--sha256", metavar="[FILE=]HEX", help="Expected sha256 of an unverified file: "
                                               "FILE=HEX, or HEX when one file is unverified (repeat)."),
    trust_unverified: bool = typer.Option(False, "--trust-unverified", help="Accept files the zoo has no verified "
                                          "sha256 for; the hash that arrives is recorded in the cache."),
    force: bool = typer.Option(False, "--force", help="Fetch again even when the entry is in the cache."),
) -> None:
    """Download a zoo entry into the cache, check its sha256, convert it; prints the file to use."""
    entry = get_entry(name)
    path = fetch(name, source=source, sha256=sha256, trust_unverified=trust_unverified, force=force)
    console.print(f"{name}: {path}")
    flag = "--motion" if entry.kind == "motion" else "--checkpoint"
    console.print(f"use it as {flag} zoo:{name}")
