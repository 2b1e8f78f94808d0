"""Walk matching (`--w-walk`, mocohd_cli/models/walk_matching.py): the energy distance between windows of
the generated walks (a large batch, latents only) and the training videos projected into the backbone."""
from __future__ import annotations

import torch
from torch import Tensor

from ...infra.errors import MocohdError
from ...models.motion import MotionGenerator
from ...models.walk_matching import energy_distance, walk_windows
from .base import Losses, Step, Term, TermContext
from .latent_motion import clips_in_basis, draw_clips


class WalkMatching(Term):
    name = "walk"

    def __init__(self, context: TermContext):
        config = context.config
        self.context, self.weight, self.extra_walks = context, config.w_walk, config.walk_batch
        self.bank: Tensor | None = None  # windows of the projected walks [M, L-1, n], in the basis' units
        self.value: Tensor | None = None

    @classmethod
    def build(cls, context: TermContext) -> "WalkMatching | None":
        return cls(context) if context.config.w_walk else None

    def setup(self, motion: MotionGenerator) -> None:
        """The bank is made once the basis is known (a resumed run's comes with its state)."""
        config, projected = self.context.config, self.context.projected()
        rollout_frames = max(config.drift_frames, config.later_horizon or 0)
        length = config.walk_frames or min(projected.shape[1], rollout_frames)
        if length > projected.shape[1]:
            raise MocohdError(f"--walk-frames {length} is longer than the projected videos ({projected.shape[1]} "
                              "frames)", path=self.context.projections_source,
                              fix=f"pass --walk-frames {projected.shape[1]} or less, or project longer videos")
        if length > rollout_frames:
            raise MocohdError(f"--walk-frames {length} is longer than the rollout ({rollout_frames} frames)",
                              fix=f"pass --walk-frames {rollout_frames} or less, or a longer --drift-horizon")
        self.bank = clips_in_basis(projected, length, motion)

    def prepare_g(self, step: Step) -> None:
        """Windows of the extra walks [B, H-1, n], each from a random frame, against as many projected clips."""
        displacements, length = step.walks.displacements, self.bank.shape[1] + 1
        batch = displacements.shape[0]
        starts = torch.randint(0, displacements.shape[1] + 2 - length, (batch,), generator=step.rng,
                               device=step.rng.device)
        self.value = self.weight * energy_distance(walk_windows(displacements, length, starts),
                                                   draw_clips(self.bank, batch, step.rng))

    def g_loss(self, step: Step) -> Losses:
        return {"walk": self.value}
