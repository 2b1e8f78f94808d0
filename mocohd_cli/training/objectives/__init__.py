"""What the motion generator trains against, per mode: discriminators and both sides' losses.

Both built-in objectives are imported here explicitly. A plugin adds one with
`register_objective(name, factory)`, or by an entry point in the group `mocohd.objectives` (name ->
factory), loaded when a run asks for it (`--objective NAME`); the trainer is reused as it is.
"""
from __future__ import annotations

import importlib.metadata as metadata
from typing import Callable

from ...infra.errors import MocohdError
from ...models.backbone import ImageGenerator
from ..config import TrainConfig
from .base import Losses, Objective
from .cross_domain import CrossDomainObjective
from .in_domain import InDomainObjective

ENTRY_POINT_GROUP = "mocohd.objectives"
ObjectiveFactory = Callable[[TrainConfig, ImageGenerator], Objective]
OBJECTIVES: dict[str, ObjectiveFactory] = {"in-domain": InDomainObjective, "cross-domain": CrossDomainObjective}


def register_objective(name: str, factory: ObjectiveFactory) -> None:
    """Make `--objective NAME` (TrainConfig(objective=name)) train against `factory(config, backbone)`."""
    OBJECTIVES[name] = factory


def objective_for(name: str) -> ObjectiveFactory:
    """The objective registered as `name`, else the entry point of that name in `mocohd.objectives`."""
    if name not in OBJECTIVES:
        found = [ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
        if not found:
            known = sorted({*OBJECTIVES, *(ep.name for ep in metadata.entry_points(group=ENTRY_POINT_GROUP))})
            raise MocohdError(f"no objective is registered as {name!r}",
                              fix=f"use one of {', '.join(known)} (a plugin registers its own)")
        try:
            register_objective(name, found[0].load())
        except Exception as exc:
            raise MocohdError(f"the objective plugin {found[0].value!r} could not be loaded "
                              f"({type(exc).__name__}: {exc})", fix="reinstall or fix the plugin") from exc
    return OBJECTIVES[name]


__all__ = ["CrossDomainObjective", "InDomainObjective", "Losses", "OBJECTIVES", "Objective", "ObjectiveFactory",
           "objective_for", "register_objective"]
