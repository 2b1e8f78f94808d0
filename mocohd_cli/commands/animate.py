"""`mocohd animate IMAGE ...`: invert images into the backbone's latent space and animate them
with a motion model (docs/animate.md)."""
from __future__ import annotations

from pathlib import Path

import typer

from ..app import PANEL_GENERATE, app
from ..data.labels import resolve_classes
from ..infra.console import console, progress
from ..infra.device import resolve_device
from ..infra.threads import threads_option
from ..models.motion import load_motion_and_backbone
from ..workflows.animate import AnimateSettings, animate
from ..workflows.sampling import DEFAULT_FPS
from .options import config_command, extra_option, given_values, labels_option, options_from
from .sample import _default_motion

_IMAGES = extra_option("images", list[Path], typer.Argument(..., metavar="IMAGE", help="Images to animate (PNG, JPEG, ...; any size: "
                                                              "see docs/animate.md for what is converted).",
                                                              show_default=False))


@config_command(app, "animate", [_IMAGES] + options_from(AnimateSettings) + [labels_option(), threads_option()],
                help="Animate images: invert each into the backbone's latent space, then unroll the motion model.\n\n"
                     "Examples:\n\n"
                     "  mocohd animate face.png\n\n"
                     "  mocohd animate a.png b.png --motion example:faces --out animations/",
                panel=PANEL_GENERATE)
def animate_command(values: dict) -> None:
    images, labels, names = values.pop("images"), values.pop("labels"), values.pop("classes")
    settings = AnimateSettings(**given_values(values))
    settings.validate()
    if settings.motion is None:
        settings.motion = str(_default_motion(replay=False))  # the latest run's, else the faces example
    backbone, motion, info = load_motion_and_backbone(settings.motion, checkpoint=settings.checkpoint,
                                                      backbone=settings.backbone,
                                                      device=resolve_device(settings.device),
                                                      truncation=settings.truncation)
    classes = resolve_classes(names, labels, num_classes=backbone.condition_dim or None)
    fps = settings.fps if settings.fps is not None else float(info.get("fps") or DEFAULT_FPS)
    with progress() as bar:
        task = bar.add_task("inverting", total=settings.steps)

        def advance(done: int, total: int, what: str) -> None:
            bar.update(task, completed=done, total=total, description=what)

        result = animate(settings, images, backbone=backbone, motion=motion, fps=fps, classes=classes,
                         progress=advance)
    for item in result.animations:
        notes = f" ({'; '.join(item.notes)})" if item.notes else ""
        console.print(f"{item.image}{notes}: inverted to PSNR {item.psnr:.2f} dB (start {item.start_psnr:.2f} dB) "
                      f"-> {item.video}, {item.compare.name}")
    if result.latents is not None:
        console.print(f"wrote the latents to {result.latents} (replay: mocohd sample --latents {result.latents})")
