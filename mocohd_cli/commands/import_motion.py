"""`mocohd import-motion`: a motion generator released with MoCoGAN-HD -> motion.safetensors."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..app import PANEL_MODELS, app
from ..infra.console import console
from ..infra.errors import MocohdError
from ..models.backbone import load_backbone, resolve_backbone_class
from ..workflows.released import import_released_motion


@app.command("import-motion", rich_help_panel=PANEL_MODELS)
def import_motion(
    release: Path = typer.Argument(..., metavar="RELEASE", help="Released motion generator (modelR_epoch_N.pth)."),
    pca_dir: Path = typer.Option(..., "--pca-dir", metavar="DIR", help="Folder with its pca_comp.npy and pca_stdev.npy."),
    out: Path = typer.Option(..., "--out", "-o", metavar="FILE", help="Output motion model (.safetensors)."),
    w_residual: float = typer.Option(0.2, "--w-residual", help="Residual step size lambda the model was trained "
                                     "with (not stored in the release; its scripts use 0.2)."),
    backbone: Optional[str] = typer.Option(None, metavar="NAME",
                                           help="Backbone the motion model belongs to (recorded; inferred "
                                           "from --checkpoint when absent)."),
    checkpoint: Optional[Path] = typer.Option(None, metavar="PATH",
                                              help="Image-generator checkpoint it was trained with: checked "
                                              "against the latent size and recorded, so `mocohd sample --motion` "
                                              "finds it."),
) -> None:
    """Import a released MoCoGAN-HD motion generator (LSTM weights + PCA statistics).

    Examples:

      mocohd import-motion modelR_epoch_N.pth --pca-dir pca/ --checkpoint ffhq-256.safetensors --out motion.safetensors
    """
    if out.suffix != ".safetensors":
        raise MocohdError("the output file must end in .safetensors", path=out, fix="pass --out NAME.safetensors")
    image_generator: object = None
    if checkpoint is not None:
        image_generator = load_backbone(backbone, checkpoint)
    elif backbone is not None:
        resolve_backbone_class(backbone)  # fail now on a misspelt name, not at sampling time
        image_generator = backbone
    motion = import_released_motion(release, pca_dir, w_residual=w_residual, backbone=image_generator)
    written = motion.save(out)
    console.print(f"wrote {written} (latent size {motion.latent_dim}, h_dim {motion.h_dim}, n_pca {motion.n_pca}, "
                  f"w_residual {motion.w_residual})")
    if checkpoint is None:
        console.print("[yellow]note: no --checkpoint given: pass the image generator's checkpoint to "
                      "`mocohd sample --checkpoint` when sampling.[/yellow]")
