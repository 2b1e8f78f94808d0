"""The image horizon (`--image-horizon`): the image discriminator also judges (frame 0, frame t) pairs drawn
past the clip, for the discriminator and for the motion generator, so long videos keep looking real."""
from __future__ import annotations

from torch import Tensor

from .base import Term, TermContext


class ImageHorizon(Term):
    name = "image_horizon"
    needs_later_in_d = True

    @classmethod
    def build(cls, context: TermContext) -> "ImageHorizon | None":
        return cls() if context.config.image_horizon else None

    def objective_kwargs(self, later: Tensor | None) -> dict:
        return {"later": later} if later is not None else {}
