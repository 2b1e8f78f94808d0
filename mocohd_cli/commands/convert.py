"""`mocohd convert`: any backbone checkpoint -> mocohd's own .safetensors (no pickle needed later)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..app import app
from ..infra.console import console
from ..infra.errors import MocohdError


@app.command("convert")
def convert(
    checkpoint: Path = typer.Argument(..., help="Backbone checkpoint to convert (e.g. a rosinality StyleGAN2 .pt)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output file (.safetensors)."),
    backbone: Optional[str] = typer.Option(None, help="Backbone: registered name, module:Class or file.py:Class "
                                           "(inferred from the checkpoint when absent)."),
) -> None:
    """Convert a backbone checkpoint into a mocohd .safetensors file (weights + architecture config)."""
    from ..models.backbone import load_backbone

    if out.suffix != ".safetensors":
        raise MocohdError("the output file must end in .safetensors", path=out, fix="pass --out NAME.safetensors")
    if out.exists() and out.resolve() == checkpoint.resolve():
        raise MocohdError("--out would overwrite the checkpoint being converted", path=out,
                          fix="choose another output file")
    model = load_backbone(backbone, checkpoint)
    save = getattr(model, "save_safetensors", None)
    if save is None:
        raise MocohdError(f"backbone {model.spec!r} cannot export to .safetensors (it has no save_safetensors method)",
                          path=checkpoint, fix="use the checkpoint as it is, or add save_safetensors to the plugin")
    written = save(out, source_sha256=model.checkpoint_sha256, source_name=checkpoint.name)
    console.print(f"wrote {written} ({model.spec}, {model.resolution} px, latent_dim {model.latent_dim})")
