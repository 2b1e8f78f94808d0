"""Procedural video domains (numpy + Pillow, deterministic from a seed) for examples and tests.

    faces   (a) cartoon faces that talk, blink and turn their heads
    robots  (b) robot heads: face-like, with a clearly different look (cross-domain partner of faces)
    sky     (c) time-lapse sky with drifting clouds (global motion)
"""
from __future__ import annotations

from pathlib import Path

from ...infra.errors import MocohdError
from .base import (DATASET_FILE, FACTORS_FILE, Domain, RenderedVideo, dataset_settings, read_factors,
                   write_dataset)
from .faces import CartoonFaces, RobotHeads
from .sky import TimeLapseSky

DOMAINS: dict[str, Domain] = {d.name: d for d in (CartoonFaces(), RobotHeads(), TimeLapseSky())}


def get_domain(name: str) -> Domain:
    if name not in DOMAINS:
        raise MocohdError(f"unknown domain {name!r} (known: {', '.join(DOMAINS)})",
                          fix="run `mocohd data list` to see the procedural domains")
    return DOMAINS[name]


def make_dataset(name: str, out: str | Path, *, videos: int = 64, frames: int = 32, size: int = 64,
                 seed: int = 0, overwrite: bool = False) -> Path:
    """Render a dataset of a named domain into `out` (DIR/video_0000/img_0000.png + factors.json)."""
    return write_dataset(get_domain(name), out, videos=videos, frames=frames, size=size, seed=seed,
                         overwrite=overwrite)


__all__ = ["DATASET_FILE", "DOMAINS", "FACTORS_FILE", "Domain", "RenderedVideo", "dataset_settings",
           "get_domain", "make_dataset", "read_factors"]
