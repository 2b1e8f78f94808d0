"""`mocohd data make|list`: procedural example video datasets with their generating factors."""
from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from ..app import app
from ..infra.console import console

data_app = typer.Typer(help="Procedural example video datasets (cartoon faces, robots, sky).", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("list")
def list_domains() -> None:
    """List the procedural domains `mocohd data make` can render."""
    from ..data.domains import DOMAINS

    table = Table(title="mocohd procedural domains")
    table.add_column("name")
    table.add_column("description")
    for domain in DOMAINS.values():
        table.add_row(domain.name, domain.description)
    Console(width=140).print(table)


@data_app.command("make")
def make(
    name: str = typer.Argument(..., help="Domain name (see `mocohd data list`)."),
    out: Path = typer.Option(..., help="Output folder: OUT/video_0000/img_0000.png ... and factors.json per video."),
    videos: int = typer.Option(64, min=1, help="Number of videos."),
    frames: int = typer.Option(32, min=1, help="Frames per video."),
    size: int = typer.Option(64, min=8, help="Frame side in pixels."),
    seed: int = typer.Option(0, help="Random seed: the same seed gives the same videos."),
    overwrite: bool = typer.Option(False, help="Write into a non-empty --out folder."),
) -> None:
    """Render a procedural video dataset, recording each video's generating factors."""
    from ..data.domains import make_dataset

    folder = make_dataset(name, out, videos=videos, frames=frames, size=size, seed=seed, overwrite=overwrite)
    console.print(f"wrote {videos} videos x {frames} frames of {name!r} at {size} px to {folder}")
