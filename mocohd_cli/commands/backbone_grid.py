"""`mocohd backbone-grid`: a PNG grid of samples of an image generator (any backbone)."""
from __future__ import annotations

from pathlib import Path

import typer

from ..app import PANEL_GENERATE, app
from ..data.labels import resolve_classes
from ..infra.console import console
from ..infra.threads import threads_option
from ..workflows.backbone_grid import GridSettings, backbone_grid
from .options import config_command, extra_option, given_values, labels_option, options_from

_PARAMETERS = [
    extra_option("checkpoint", Path, typer.Argument(..., metavar="CHECKPOINT", help="Image-generator checkpoint (.safetensors, .pt, .pkl, "
                                                     "or a folder, as the backbone reads it).")),
    *options_from(GridSettings),
    labels_option(),
]


@config_command(app, "backbone-grid", _PARAMETERS + [threads_option()],
                help="Write a grid of image samples of a backbone (e.g. the docs' backbone_samples_*.png).\n\n"
                     "Example:\n\n"
                     "  mocohd backbone-grid example:faces --out faces.png",
                panel=PANEL_GENERATE)
def backbone_grid_command(values: dict) -> None:
    checkpoint, labels, names = values.pop("checkpoint"), values.pop("labels"), values.pop("classes")
    settings = GridSettings(**given_values(values))
    settings.classes = resolve_classes(names, labels)
    path = backbone_grid(checkpoint, settings)
    console.print(f"wrote {path}")
