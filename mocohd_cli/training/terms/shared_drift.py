"""The shared-drift penalty (`--w-drift`, `--drift-momentum`; docs/method.md, "Additions"): the videos
of a batch must not all walk the same way in the latent space."""
from __future__ import annotations

from torch import nn

from ...models.losses import RunningSharedDrift, shared_drift_loss
from .base import Losses, Step, Term, TermContext


class SharedDrift(Term):
    name = "drift"

    def __init__(self, weight: float, estimator):
        self.weight, self.estimator = weight, estimator

    @classmethod
    def build(cls, context: TermContext) -> "SharedDrift | None":
        config = context.config
        if not config.w_drift:
            return None
        if not config.drift_momentum:  # pairs within the batch
            return cls(config.w_drift, shared_drift_loss)
        running = RunningSharedDrift(config.drift_frames - 1, config.n_pca, config.drift_momentum)
        return cls(config.w_drift, running.to(context.device))

    def g_loss(self, step: Step) -> Losses:
        return {"drift": self.weight * self.estimator(step.rollout.displacements)}

    def has_state(self) -> bool:
        return isinstance(self.estimator, nn.Module)

    def state_dict(self) -> dict:
        return self.estimator.state_dict() if self.has_state() else {}

    def load_state_dict(self, state: dict) -> None:
        if self.has_state():
            self.estimator.load_state_dict(state)
