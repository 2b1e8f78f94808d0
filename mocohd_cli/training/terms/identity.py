"""The identity loss (`--w-identity`, mocohd_cli/models/identity.py): each generated frame keeps frame 0's
identity as closely as the training videos' frames keep theirs, as a frozen encoder trained on them sees it."""
from __future__ import annotations

import torch

from ...models.identity import DEFAULT_STEPS, IdentityEncoder, identity_loss, read_identity_encoder
from ..identity import identity_encoder_for
from .base import Losses, Step, Term, TermContext


class Identity(Term):
    name = "identity"

    def __init__(self, context: TermContext, encoder, real_distance: float):
        config = context.config
        self.weight, self.encoder, self.real_distance = config.w_identity, encoder.to(context.device), real_distance
        self.judges_later = (config.identity_horizon or 0) > config.frames

    @classmethod
    def build(cls, context: TermContext) -> "Identity | None":
        config = context.config
        if not config.w_identity:
            return None
        if config.resume:  # the run's encoder comes with its state
            encoder, distance = IdentityEncoder().eval().requires_grad_(False), 0.0
        elif config.identity_encoder:
            encoder, distance = read_identity_encoder(config.identity_encoder)
        else:  # rank 0 trains it (or finds it in the cache) and shares it
            encoder, distance = None, None
            if context.dist.is_main:
                with context.progress_bar("identity encoder", DEFAULT_STEPS) as report:
                    encoder, distance = identity_encoder_for(config.data, frames=config.frames,
                                                             time_step=config.time_step, seed=config.seed,
                                                             progress=report)
            encoder, distance = context.dist.broadcast((encoder, distance))
        return cls(context, encoder, distance)

    def g_loss(self, step: Step) -> Losses:
        seen = torch.cat([step.fake, step.later], 1) if self.judges_later and step.later is not None else step.fake
        return {"identity": self.weight * identity_loss(self.encoder, seen, self.real_distance)}

    def has_state(self) -> bool:
        return True

    def state_dict(self) -> dict:
        return {"encoder": self.encoder.state_dict(), "real_distance": self.real_distance}

    def load_state_dict(self, state: dict) -> None:
        self.encoder.load_state_dict(state["encoder"])
        self.real_distance = float(state["real_distance"])
