"""The metrics of `mocohd eval`, and the pipeline that computes them (docs/evaluation.md).

Feature metrics (StyleGAN-V's definitions):
    fvd16, fvd128   Frechet distance of I3D features of 16 / 128-frame clips
    kvd             kernel distance of the same I3D features (16-frame clips)
    fid, kid        Frechet / kernel distance of Inception features of frames
    isv             video Inception Score of the C3D (UCF-101) classifier, 16-frame clips
    acd             average content distance: mean pairwise L2 distance between the embeddings of a
                    video's frames, averaged over videos (an embedder you give)
Ground-truth metrics on the procedural domains (mocohd_cli/evaluation/groundtruth.py):
    motion, content, frames
Video prediction (mocohd_cli/evaluation/prediction.py):
    prediction      PSNR and SSIM of frames unrolled from each real video's inverted first frame
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from torch import Tensor

from ..infra.console import progress
from ..infra.distributed import DistContext, Share, gather_batches, share_of
from ..infra.errors import MocohdError
from ..infra.files import cache_dir
from .statistics import FeatureStats, load_stats, save_stats

GROUND_TRUTH = ("motion", "content", "frames")
# How real frames are prepared (part of the statistics cache key: a change invalidates old entries).
PREPROCESSING = "centre crop, Lanczos resize (mocohd_cli.data.clips.frames_to_clip), rounded uint8"


@dataclass(frozen=True)
class FeatureKind:
    """Which network reads what: clips of `n_frames` frames, or single frames (n_frames 0)."""

    detector: str
    n_frames: int

    @property
    def key(self) -> str:
        return f"{self.detector}-{self.n_frames}f" if self.n_frames else f"{self.detector}-frames"


@dataclass(frozen=True)
class Metric:
    name: str
    description: str
    kind: FeatureKind | None  # None: a ground-truth metric
    needs_real: bool
    lower_is_better: bool


I3D16, I3D128, FRAMES = FeatureKind("i3d", 16), FeatureKind("i3d", 128), FeatureKind("inception", 0)
METRICS = {metric.name: metric for metric in (
    Metric("fvd16", "Frechet video distance, I3D features of 16-frame clips", I3D16, True, True),
    Metric("fvd128", "Frechet video distance, I3D features of 128-frame clips", I3D128, True, True),
    Metric("kvd", "kernel video distance (x1000), I3D features of 16-frame clips", I3D16, True, True),
    Metric("fid", "Frechet Inception distance of frames", FRAMES, True, True),
    Metric("kid", "kernel Inception distance of frames (x1000)", FRAMES, True, True),
    Metric("isv", "video Inception Score, C3D trained on UCF-101 (mean over 10 splits)", FeatureKind("c3d", 16),
           False, False),
    Metric("acd", "average content distance between the frames of a video (embedder features)",
           FeatureKind("embedder", 16), False, True),
    Metric("motion", "ground truth: Frechet distance of factor trajectories (ffd); amplitude and speed ratios",
           None, True, True),
    Metric("content", "ground truth: identity drift from frame 0, relative to real videos", None, True, True),
    Metric("frames", "ground truth: Frechet distance of the factor reader's frame features", None, True, True),
    Metric("prediction", "video prediction: PSNR (dB) of frames 1..T-1 unrolled from each real video's inverted "
           "frame 0 (mocohd_cli/evaluation/prediction.py)", None, True, False),
)}
# Values a metric reports beside its headline (the eval table describes them too).
EXTRA_VALUES = {"prediction_ssim": "video prediction: SSIM of the same frames (11x11 gaussian window)"}


def get_metric(name: str) -> Metric:
    if name not in METRICS:
        raise MocohdError(f"unknown metric {name!r}", fix=f"use one of {', '.join(METRICS)}")
    return METRICS[name]


@dataclass
class EvalResult:
    values: dict[str, float]  # the headline number of each metric, by its name
    details: dict[str, dict] = field(default_factory=dict)  # everything else a metric reports
    protocol: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {**self.values, "details": self.details, "protocol": self.protocol}


# -- feature extraction --------------------------------------------------------------------------
def batches_for(kind: FeatureKind, source, batch_size: int, share: Share | None = None) -> Iterator[Tensor]:
    return source.frames(batch_size, share) if kind.n_frames == 0 else source.clips(kind.n_frames, batch_size, share)


def extract(kind: FeatureKind, source, network: Callable[[Tensor], Tensor], *, batch_size: int, total: int | None,
            label: str, seed: int = 0, context: DistContext | None = None) -> FeatureStats | None:
    """Feature statistics of everything `source` yields for `kind`. Under torchrun (`context`) each
    rank reads its share of the batches and rank 0 accumulates every batch's features in the global
    order: the same statistics, bit for bit, as one process; the other ranks get None."""
    stats, features = FeatureStats(seed=seed), []
    with progress() as bar:
        task = bar.add_task(f"{kind.key} features of {label}", total=total)
        for batch in batches_for(kind, source, batch_size, share_of(context)):
            parts = [network(part) for part in batch.split(batch_size)]
            if context is None or not context.enabled:
                for part in parts:
                    stats.update(part.numpy())
            else:
                features.append(torch.cat(parts))
            bar.advance(task, len(batch))
    if context is not None and context.enabled:
        gathered = gather_batches(context, features)
        if gathered is None:
            return None
        for batch_features in gathered:  # the parts one process would have added, in its order
            for part in batch_features.split(batch_size):
                stats.update(part.numpy())
    return stats


def average_content_distance(source, embedder: Callable[[Tensor], Tensor], *, n_frames: int,
                             batch_size: int, context: DistContext | None = None) -> tuple[float, int] | None:
    """Mean over videos of the mean pairwise L2 distance between the embeddings of its frames
    (MoCoGAN's ACD). Under torchrun the batches are dealt over the ranks; rank 0 gets the value,
    the other ranks None."""
    batches = []
    for clips in source.clips(n_frames, batch_size, share_of(context)):
        b, t = clips.shape[:2]
        embedded = embedder(clips.flatten(0, 1)).view(b, t, -1).double()
        distances = torch.cdist(embedded, embedded)  # [B, T, T]
        pairs = t * (t - 1)
        batches.append(distances.sum(dim=(1, 2)) / pairs)
    gathered = gather_batches(context, batches)
    if gathered is None:
        return None
    per_video = [value for batch in gathered for value in batch.tolist()]
    if not per_video:
        raise MocohdError("no videos to compute ACD on", fix="check --fake")
    return float(np.mean(per_video)), len(per_video)


# -- real statistics, cached ----------------------------------------------------------------------
def dataset_fingerprint(root: Path) -> str:
    """sha256 of the dataset's file names, sizes and modification times (cheap; a changed file
    changes it)."""
    digest = hashlib.sha256()
    files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
    for path in files:
        stat = path.stat()
        digest.update(f"{path.relative_to(root) if root.is_dir() else path.name}:{stat.st_size}:"
                      f"{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def real_protocol(kind: FeatureKind, source, detector_sha: str, resolution: int) -> dict:
    return {"kind": kind.key, "dataset": str(source.root), "dataset_fingerprint": (source.fingerprint() if hasattr(source, "fingerprint")
                                                                else dataset_fingerprint(source.root)),
            "n_frames": kind.n_frames, "resolution": resolution, "max_videos": source.max_videos,
            "max_frames": source.max_frames, "seed": source.seed, "detector_sha256": detector_sha,
            "preprocessing": PREPROCESSING}


def cached_real_stats(kind: FeatureKind, source, network, detector_sha: str, *, resolution: int, batch_size: int,
                      use_cache: bool = True, context: DistContext | None = None) -> tuple[FeatureStats | None, dict]:
    """Under torchrun (`context`) the clips are read over the ranks and only rank 0 gets the
    statistics (the others: None) and writes the cache."""
    protocol = real_protocol(kind, source, detector_sha, resolution)
    key = hashlib.sha256(json.dumps(protocol, sort_keys=True).encode()).hexdigest()[:24]
    path = cache_dir() / "eval-stats" / f"{kind.key}-{key}.npz"
    cached = use_cache and path.is_file()
    if context is not None and context.enabled:
        cached = context.all_agree(cached)  # every rank reads the clips, or none does
    if cached:
        return load_stats(path)[kind.key]
    stats = extract(kind, source, network, batch_size=batch_size, total=None, label="real videos", context=context)
    if stats is None:
        return None, protocol
    protocol = {**protocol, "count": stats.count, "skipped_too_short": len(source.report.too_short),
                "skipped_unreadable": len(source.report.corrupt)}
    if use_cache:
        save_stats(path, {kind.key: (stats, protocol)})
    return stats, protocol
