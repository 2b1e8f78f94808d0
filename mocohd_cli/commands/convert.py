"""`mocohd convert`: any backbone checkpoint -> mocohd's own .safetensors (no pickle needed later)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..app import PANEL_MODELS, app
from ..infra.console import console
from ..workflows.convert import convert_backbone


@app.command("convert", rich_help_panel=PANEL_MODELS)
def convert(
    checkpoint: Path = typer.Argument(..., metavar="CHECKPOINT", help="Backbone checkpoint to convert (e.g. a rosinality StyleGAN2 .pt)."),
    out: Path = typer.Option(..., "--out", "-o", metavar="FILE", help="Output file (.safetensors)."),
    backbone: Optional[str] = typer.Option(None, metavar="NAME",
                                           help="Backbone: registered name, module:Class or file.py:Class "
                                           "(inferred from the checkpoint when absent)."),
) -> None:
    """Convert a backbone checkpoint into a mocohd .safetensors file (weights + architecture config).

    Examples:

      mocohd convert stylegan2-ffhq-256.pt --out ffhq-256.safetensors
    """
    written, model = convert_backbone(checkpoint, out, backbone)
    console.print(f"wrote {written} ({model.spec}, {model.resolution} px, latent_dim {model.latent_dim})")
