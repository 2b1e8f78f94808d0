"""The built-in default: example backbones shipped with the package, example datasets rendered
on first use into a user cache, and short schedules that run out of the box.

    mocohd train      (no arguments) in-domain: the "faces" backbone + a "faces" video dataset
    mocohd transfer   (no arguments) cross-domain: the "robots" backbone + "faces" videos

The example backbones are 64 px StyleGAN2 generators trained with `mocohd pretrain` on the
procedural domains (see docs/examples.md for the exact settings); each lives in
mocohd_cli/assets/ as stylegan2_<domain>_64.safetensors.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from ..data.domains import DOMAINS, dataset_settings, get_domain, make_dataset
from ..infra.errors import MocohdError
from ..infra.files import CACHE_ENV, cache_dir
from ..training.config import TrainConfig
from ..training.example_schedule import (EXAMPLE_IDENTITY, EXAMPLE_LATENT_MOTION, EXAMPLE_PCA_SOURCE, EXAMPLE_SIZE,
    QUICK_SCHEDULE, example_schedule)
# the examples' schedules live with the presets that hold them (training layer); re-exported here for callers

ASSETS = Path(__file__).resolve().parents[1] / "assets"
# The example dataset each default run renders on first use (about 10 s and 3 MB per domain).
EXAMPLE_VIDEOS = 64
EXAMPLE_FRAMES = 32


def backbone_file(name: str) -> str:
    return f"stylegan2_{name}_{EXAMPLE_SIZE}.safetensors"


def _shipped(names, file_name) -> dict[str, Path]:
    """{name: path} of the assets `file_name(name)` this installation holds."""
    return {name: ASSETS / file_name(name) for name in names if (ASSETS / file_name(name)).is_file()}


def example_backbones() -> dict[str, Path]:
    """Every example backbone shipped in this installation, by domain name."""
    return _shipped(DOMAINS, backbone_file)


def default_backbone(name: str = "faces") -> Path:
    """Path of the shipped example backbone trained on procedural domain `name`."""
    get_domain(name)  # a clear error for unknown names
    path = ASSETS / backbone_file(name)
    if not path.is_file():
        shipped = ", ".join(example_backbones()) or "none"
        raise MocohdError(f"no example backbone for domain {name!r} in this installation (shipped: {shipped})",
                          path=path, fix=f"train one: mocohd data make {name} --out DIR && "
                                          f"mocohd pretrain --data DIR --out RUN (see docs/examples.md)")
    return path


# The names `mocohd sample --example NAME` takes (docs/examples.md, "Shipped motion models"): faces,
# in-domain (faces backbone, face videos); robots, cross-domain (robots backbone, face videos); sky,
# in-domain (sky backbone, sky videos).
EXAMPLE_MOTIONS = ("faces", "robots", "sky")


def motion_file(name: str) -> str:
    return f"motion_{name}_{EXAMPLE_SIZE}.safetensors"


def shipped_example_motions() -> dict[str, Path]:
    """Every trained example motion model in this installation, by name."""
    return _shipped(EXAMPLE_MOTIONS, motion_file)


def example_motion(name: str) -> Path:
    """Path of the shipped, trained example motion model `name` (one of EXAMPLE_MOTIONS)."""
    if name not in EXAMPLE_MOTIONS:
        raise MocohdError(f"unknown example {name!r}", fix=f"use one of: {', '.join(EXAMPLE_MOTIONS)}")
    shipped = shipped_example_motions()
    if name not in shipped:
        raise MocohdError(f"no trained {name!r} example motion model in this installation (shipped: "
                          f"{', '.join(shipped) or 'none'})", path=ASSETS / motion_file(name),
                          fix="train your own (`mocohd train`, or `mocohd transfer` for robots; docs/examples.md) "
                              "and sample it with `mocohd sample --motion RUN/motion.safetensors`")
    return shipped[name]


def default_dataset(name: str = "faces", *, videos: int = EXAMPLE_VIDEOS, frames: int = EXAMPLE_FRAMES,
                    size: int = EXAMPLE_SIZE, seed: int = 0) -> Path:
    """A procedural video dataset in the user cache, rendered on first use and reused afterwards.

    Rendered into a temporary folder and renamed into place, so an interrupted or concurrent first
    use never leaves a half-written dataset behind."""
    folder = cache_dir() / "datasets" / f"{name}-{size}px-{videos}x{frames}-seed{seed}"
    if dataset_settings(folder) is not None:
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        make_dataset(name, staging, videos=videos, frames=frames, size=size, seed=seed, overwrite=True)
        if folder.exists():  # a stale incomplete copy (no dataset.json): replace it
            if dataset_settings(folder) is not None:
                return folder  # another process finished first
            shutil.rmtree(folder)
        os.replace(staging, folder)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return folder


def projections_file(name: str) -> str:
    return f"projections_{name}_{EXAMPLE_SIZE}.safetensors"


def identity_file(name: str) -> str:
    return f"identity_{name}_{EXAMPLE_SIZE}.safetensors"


def default_train_values() -> dict:
    """Training options of the built-in in-domain example: the "faces" backbone on rendered
    "faces" videos (the dataset is rendered into the cache on first use), with the latent motion
    discriminator on the shipped projections of those videos, the motion basis taken from the same
    projections, and the identity loss with the shipped identity encoder of those videos."""
    return dict(example_schedule("in-domain"),
                checkpoint=str(default_backbone("faces")), data=str(default_dataset("faces")),
                latent_motion=str(ASSETS / projections_file("faces")),
                identity_encoder=str(ASSETS / identity_file("faces")))


def default_transfer_values() -> dict:
    """Training options of the built-in cross-domain example: robot heads (backbone "robots")
    animated with the motion of talking cartoon faces (videos of domain "faces")."""
    return dict(example_schedule("cross-domain"),
                checkpoint=str(default_backbone("robots")), data=str(default_dataset("faces")))


def is_example_backbone(checkpoint: str | None) -> bool:
    """Whether `checkpoint` names a backbone shipped in the package (example:NAME, or the file itself)."""
    if not checkpoint:
        return False
    if str(checkpoint).startswith("example:"):
        return True
    try:
        path = Path(checkpoint).resolve()
    except (OSError, ValueError):
        return False
    return path.parent == ASSETS and path.name.startswith("stylegan2_")


def default_train_config(**overrides):
    """`mocohd train` without --checkpoint/--data, as a TrainConfig (options override the example's)."""
    return TrainConfig.from_dict({**default_train_values(), **overrides})


def default_transfer_config(**overrides):
    """`mocohd transfer` without arguments, as a TrainConfig."""
    return TrainConfig.from_dict({**default_transfer_values(), **overrides})
