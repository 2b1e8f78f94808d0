"""What an optional loss term of the motion training is, and what it is given.

A term is one small object: what it builds (`build`, from the run's config and a `TermContext`),
its state (`state_dict` / `load_state_dict`, kept in the training state under `state_key`), and its
contribution to the two halves of an iteration:

    generator step      prepare_g (before the rollout is cut to the discriminators' horizon),
                        then g_loss (after the objective's losses; its values are added to them)
    discriminator step  d_update (its own discriminator's update, before the objective's), and
                        objective_kwargs (what the objective's losses take beyond the clips)

The trainer (training/trainer.py) runs the active terms in the registry's order (terms/__init__.py).
Every method has a default that does nothing, so a term overrides only what it takes part in.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import Tensor, nn

from ...infra.distributed import DistContext
from ...models.backbone import ImageGenerator
from ...models.motion import MotionGenerator, Rollout

Losses = dict[str, Tensor]


@dataclass
class TermContext:
    """What a term may use when it is built: the run's pieces, shared rather than rebuilt."""

    config: Any                                  # the run's TrainConfig
    backbone: ImageGenerator
    device: torch.device
    dist: DistContext
    projected: Callable[[], Tensor]              # the training videos projected into the backbone [N, F, D]
    projections_source: str                      # what they came from, for error messages
    progress_bar: Callable                       # progress_bar(label, total) -> context yielding report(done, total)
    distribute: Callable[[nn.Module], nn.Module]  # a DDP wrapper under torchrun, else the module itself
    weights: dict[str, float] = field(default_factory=dict)  # --term NAME=WEIGHT, for terms registered by plugins

    def weight(self, name: str) -> float:
        return self.weights.get(name, 0.0)


@dataclass
class Step:
    """One generator or discriminator step as the terms see it."""

    real: Tensor                 # the real clips [B, T, 3, S, S]
    fake: Tensor                 # the generated clips, the same shape
    rollout: Rollout             # their latents and displacements (the G step: cut to the horizon after prepare_g)
    later: Tensor | None         # frames past the clip [B, extra, 3, S, S] (--identity-horizon / --image-horizon)
    rng: torch.Generator         # the step's random stream (on the device)
    walks: Rollout | None = None  # extra latent-only walks rolled out with the clips (prepare_g only)


class Term:
    """An optional loss term (see the module docstring)."""

    name: str = ""
    extra_walks: int = 0          # latent-only walks the G step rolls out beside the clips for this term
    needs_later_in_d: bool = False  # the D step synthesises frames past the clip for it

    @property
    def state_key(self) -> str:
        return self.name

    def setup(self, motion: MotionGenerator) -> None:
        """After the motion model exists and a resumed state is loaded (its basis is then known)."""

    def prepare_g(self, step: Step) -> None:
        """Before the rollout is cut to the clips and the discriminators' horizon (e.g. to read `step.walks`)."""

    def g_loss(self, step: Step) -> Losses:
        return {}

    def d_update(self, step: Step) -> Losses:
        """Its own discriminator's update, before the objective's; returns what to log."""
        return {}

    def objective_kwargs(self, later: Tensor | None) -> dict:
        return {}

    def has_state(self) -> bool:
        return False

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass
