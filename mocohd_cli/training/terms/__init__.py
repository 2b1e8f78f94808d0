"""The optional loss terms of the motion training, registered by name (training/terms/base.py says what a
term is). The trainer builds every registered term in this order; a term whose setting is off builds None.

A plugin adds one with `register_term(name, build)` (mocohd_cli.plugin_api), or by an entry point in the
group `mocohd.terms` (name -> build), loaded when a run names it: `build(context)` returns the term, or None
when `context.weight(name)` (from `--term NAME=WEIGHT`) is 0.
"""
from __future__ import annotations

import importlib.metadata as metadata
from typing import Callable

from ...infra.errors import MocohdError
from .base import Losses, Step, Term, TermContext
from .identity import Identity
from .image_horizon import ImageHorizon
from .latent_motion import LatentMotion
from .shared_drift import SharedDrift
from .walk_matching import WalkMatching

TermBuilder = Callable[[TermContext], "Term | None"]
# The order is the order of their losses in a step's sum (it is what a fixed seed reproduces).
TERMS: dict[str, TermBuilder] = {"drift": SharedDrift.build, "latent_motion": LatentMotion.build,
                                 "walk": WalkMatching.build, "identity": Identity.build,
                                 "image_horizon": ImageHorizon.build}
BUILTIN_TERMS = tuple(TERMS)
ENTRY_POINT_GROUP = "mocohd.terms"


def register_term(name: str, build: TermBuilder) -> None:
    """Make `--term NAME=WEIGHT` add the term `build(context)` to the motion training."""
    if name in BUILTIN_TERMS:
        raise MocohdError(f"{name!r} is a built-in term", fix="register the plugin's term under another name")
    TERMS[name] = build


def registered_terms(names=()) -> dict[str, TermBuilder]:
    """The registry, with the entry points of `mocohd.terms` among `names` loaded and registered first."""
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in names and ep.name not in TERMS:
            try:
                register_term(ep.name, ep.load())
            except MocohdError:
                raise
            except Exception as exc:
                raise MocohdError(f"the loss-term plugin {ep.value!r} could not be loaded ({type(exc).__name__}: "
                                  f"{exc})", fix="reinstall or fix the plugin") from exc
    return TERMS


def build_terms(context: TermContext) -> list[Term]:
    """The active terms of a run, in the registry's order."""
    return [term for build in TERMS.values() if (term := build(context)) is not None]


__all__ = ["BUILTIN_TERMS", "Losses", "Step", "TERMS", "Term", "TermBuilder", "TermContext", "build_terms",
           "register_term", "registered_terms"]
