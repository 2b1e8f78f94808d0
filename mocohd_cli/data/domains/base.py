"""What a procedural video domain is, and how a dataset of one is written to disk.

A domain renders one video from a numpy Generator: frames [T, S, S, 3] uint8 plus the factors
that generated them (per-video content factors and per-frame motion factors), so that motion and
content of trained models can be measured against the ground truth later.

Layout written by `write_dataset` (the frame-folder layout `mocohd train --data` reads):
    DIR/dataset.json                 domain, settings, seed, format version
    DIR/video_0000/img_0000.png ...  frames
    DIR/video_0000/factors.json      {"content": {...}, "motion": {name: [T values]}}
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ...infra.console import progress
from ...infra.errors import MocohdError

FORMAT_VERSION = 1
DATASET_FILE = "dataset.json"
FACTORS_FILE = "factors.json"


@dataclass
class RenderedVideo:
    frames: np.ndarray                      # [T, S, S, 3] uint8
    content: dict = field(default_factory=dict)   # per-video factors (JSON-serialisable)
    motion: dict = field(default_factory=dict)    # name -> float array [T]


class Domain:
    """A procedural video domain. Subclasses set `name`, `description` and implement `render`."""

    name: str = ""
    description: str = ""

    def render(self, rng: np.random.Generator, n_frames: int, size: int) -> RenderedVideo:
        raise NotImplementedError

    def video(self, seed: int, index: int, n_frames: int, size: int) -> RenderedVideo:
        """Video `index` of the dataset with this seed; independent of how many videos are made."""
        if n_frames < 1 or size < 8:
            raise MocohdError(f"cannot render {n_frames} frames of {size} px",
                              fix="use at least 1 frame and a size of at least 8 px")
        rng = np.random.default_rng([seed, index, _stable_hash(self.name)])
        return self.render(rng, n_frames, size)


def _stable_hash(text: str) -> int:
    return int.from_bytes(text.encode()[:8].ljust(8, b"\0"), "little") % (2**31)


def _jsonable(value):
    if isinstance(value, np.ndarray):
        return [round(float(v), 5) for v in value.reshape(-1)]
    if isinstance(value, (np.floating, float)):
        return round(float(value), 5)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def write_video(video: RenderedVideo, folder: Path, *, extra: dict | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for t, frame in enumerate(video.frames):
        Image.fromarray(frame).save(folder / f"img_{t:04d}.png", optimize=False, compress_level=1)
    record = {**(extra or {}), "content": _jsonable(video.content), "motion": _jsonable(video.motion)}
    (folder / FACTORS_FILE).write_text(json.dumps(record))


def write_dataset(domain: Domain, out: str | Path, *, videos: int, frames: int, size: int,
                  seed: int = 0, overwrite: bool = False) -> Path:
    """Render `videos` videos of `frames` frames at `size` px into `out` (frame-folder layout)."""
    out = Path(out)
    if videos < 1:
        raise MocohdError("--videos must be at least 1", fix="pass --videos 1 or more")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise MocohdError("output folder exists and is not empty", path=out,
                              fix="choose a new --out folder, or pass --overwrite to replace its videos")
        if dataset_settings(out) is None:  # never delete files that mocohd did not write
            raise MocohdError("--overwrite only replaces a dataset written by `mocohd data make`", path=out,
                              fix="choose a new --out folder")
        for stale in out.glob("video_[0-9][0-9][0-9][0-9]"):
            shutil.rmtree(stale)
    out.mkdir(parents=True, exist_ok=True)
    settings = {"domain": domain.name, "videos": videos, "frames": frames, "size": size, "seed": seed,
                "format_version": FORMAT_VERSION}
    # dataset.json is written last: its presence marks a complete dataset (used by the cache)
    (out / DATASET_FILE).unlink(missing_ok=True)
    with progress() as bar:
        task = bar.add_task(f"rendering {domain.name}", total=videos)
        for index in range(videos):
            video = domain.video(seed, index, frames, size)
            write_video(video, out / f"video_{index:04d}",
                        extra={"domain": domain.name, "seed": seed, "index": index})
            bar.advance(task)
    (out / DATASET_FILE).write_text(json.dumps(settings, indent=1))
    return out


def read_factors(video_folder: str | Path) -> dict:
    """The factors recorded for one video folder (content and per-frame motion)."""
    path = Path(video_folder) / FACTORS_FILE
    if not path.exists():
        raise MocohdError("no factors recorded for this video", path=path,
                          fix="only videos written by `mocohd data make` have factors")
    return json.loads(path.read_text())


def dataset_settings(folder: str | Path) -> dict | None:
    """The settings of a complete generated dataset, or None if `folder` is not one."""
    path = Path(folder) / DATASET_FILE
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
