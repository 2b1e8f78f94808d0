"""What the motion generator trains against, per mode: discriminators and both sides' losses.

Both built-in objectives are imported here explicitly; a plugin adds a mode with
`register_objective(mode, factory)` and reuses the trainer as it is.
"""
from __future__ import annotations

from typing import Callable

from ...infra.errors import MocohdError
from ...models.backbone import ImageGenerator
from ..config import TrainConfig
from .base import Losses, Objective
from .cross_domain import CrossDomainObjective
from .in_domain import InDomainObjective

ObjectiveFactory = Callable[[TrainConfig, ImageGenerator], Objective]
OBJECTIVES: dict[str, ObjectiveFactory] = {"in-domain": InDomainObjective, "cross-domain": CrossDomainObjective}


def register_objective(mode: str, factory: ObjectiveFactory) -> None:
    """Make `TrainConfig(mode=mode)` train against `factory(config, backbone)`."""
    OBJECTIVES[mode] = factory


def objective_for(mode: str) -> ObjectiveFactory:
    if mode not in OBJECTIVES:
        raise MocohdError(f"no objective is registered for mode {mode!r}", fix=f"use one of {', '.join(OBJECTIVES)}")
    return OBJECTIVES[mode]


__all__ = ["CrossDomainObjective", "InDomainObjective", "Losses", "OBJECTIVES", "Objective", "ObjectiveFactory",
           "objective_for", "register_objective"]
