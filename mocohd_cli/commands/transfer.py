"""`mocohd transfer`: cross-domain training, images of domain A moved like the videos of domain B.

It takes every option of `mocohd train` (the same trainer runs it), with --checkpoint and
--data named for what they are here, plus the contrastive image discriminator's knobs. The
command's signature is derived from `train`'s so the two can never drift apart.
"""
from __future__ import annotations

import inspect
from typing import Optional

import typer

from ..app import app
from .train import run_training, train_command

# train's option -> (transfer's parameter name, flag, help)
_RENAMED = {
    "checkpoint": ("image_domain", "--image-domain",
                   "Image-generator checkpoint of domain A (the look). With --motion-domain; neither: the built-in "
                   "cross-domain example."),
    "data": ("motion_domain", "--motion-domain",
             "Videos of domain B (the motion): a folder (or .zip) of frame folders or video files."),
}
_EXTRA = {
    "w_match": (float, "Weight of the frame-t/frame-0 feature matching in the motion objective (default 1.0)."),
    "queue_size": (int, "Length of the contrastive discriminator's feature queues (default 4096)."),
    "temperature": (float, "Temperature of the contrastive loss (default 0.07)."),
    "momentum": (float, "EMA momentum of the discriminator's momentum copy (default 0.999)."),
    "image_d_channels": (int, "Width of the contrastive image discriminator (default 96, as released)."),
    "proj_dim": (int, "Size of its projection head's features (default 256)."),
    "w_contrastive": (float, "Weight of the contrastive terms in its loss (default 2.0)."),
}


def _transfer_signature() -> inspect.Signature:
    parameters = []
    for parameter in inspect.signature(train_command, eval_str=True).parameters.values():
        if parameter.name in _RENAMED:
            name, flag, text = _RENAMED[parameter.name]
            parameter = parameter.replace(name=name, default=typer.Option(None, flag, help=text))
        parameters.append(parameter)
    for name, (kind, text) in _EXTRA.items():
        parameters.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=Optional[kind],
                                            default=typer.Option(None, help=text)))
    return inspect.Signature(parameters, return_annotation=None)


def transfer_command(**arguments) -> None:
    """Cross-domain training: animate an image generator of one domain with the motion of videos of
    another (contrastive image discriminator, whole-clip video discriminator)."""
    arguments["checkpoint"] = arguments.pop("image_domain")
    arguments["data"] = arguments.pop("motion_domain")
    run_training(arguments, mode="cross-domain")


transfer_command.__signature__ = _transfer_signature()
transfer_command.__annotations__ = {}
app.command("transfer")(transfer_command)
