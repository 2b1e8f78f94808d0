"""`mocohd eval` as a library: `EvalSettings` (every option of the command) and `run_evaluation`."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..data.domains import dataset_settings
from ..infra.device import resolve_device
from ..infra.distributed import DistContext, gather_batches, share_of
from ..infra.errors import MocohdError
from ..infra.settings import check_setting_types, require_positive, setting
from ..infra.version import __version__
from ..models.backbone import BACKBONE_HELP
from ..models.inversion import DEFAULT_CANDIDATES, DEFAULT_STEPS
from ..models.motion import load_motion_and_backbone
from .detectors import load_detector, load_embedder, parse_detector_options
from .groundtruth import Readings, content_metrics, frames_metrics, motion_metrics, read_videos, render_real
from .metrics import (GROUND_TRUTH, METRICS, EvalResult, FeatureKind, average_content_distance, cached_real_stats,
                      extract, get_metric)
from .prediction import evaluate_prediction
from .readers import load_reader
from .sources import FolderVideos, GeneratedVideos, real_videos
from .statistics import frechet_distance, inception_score, kernel_distance, load_stats

STYLEGAN_V_VIDEOS = 2048


@dataclass
class EvalSettings:
    """Every knob of `mocohd eval`."""

    metrics: list[str] | None = setting(None, f"Metric to compute; repeat for several ({', '.join(METRICS)}).",
                                        flag="--metric", default_text="fvd16", group="Protocol")
    real: str | None = setting(None, "Real videos: anything `mocohd train --data` reads, or a statistics file "
                               "from `mocohd eval stats`.", group="Videos")
    fake: str | None = setting(None, "Generated videos: a folder written by `mocohd sample` (one file or frame "
                               "folder per video).", default_text="generated from --motion", group="Videos")
    motion: str | None = setting(None, "Motion model to generate the videos from (instead of --fake).", group="Videos")
    checkpoint: str | None = setting(None, "Image-generator checkpoint for --motion.",
                                     default_text="the one the motion model records", group="Videos")
    backbone: str | None = setting(None, BACKBONE_HELP, default_text="inferred", group="Videos")
    truncation: float = setting(1.0, "Truncation of the generated videos' content codes.", group="Videos")
    domain: str | None = setting(None, "Procedural domain of the ground-truth metrics (see `mocohd data list`).",
                                 default_text="the --real dataset's, from its dataset.json", group="Protocol")
    num_videos: int = setting(STYLEGAN_V_VIDEOS, "Videos on each side (real: the first this many that are long "
                              "enough).", group="Protocol")
    frames: int = setting(16, "Frames per video for the metrics whose clip length is not in their name (fid, "
                          "kid, acd, ground truth).", group="Protocol")
    time_step: int | None = setting(None, "Ground-truth metrics: real frames per generated step, so that speeds "
                                    "compare like with like.",
                                    default_text="the motion model's training --time-step, 1 for --fake",
                                    group="Protocol")
    resolution: int | None = setting(None, "Side the videos are evaluated at (real frames are centre-cropped "
                                     "and resized to it).", default_text="the generated videos'", group="Protocol")
    seed: int = setting(0, "Seed of the real clips' offsets and of generated videos.", group="Protocol")
    batch_size: int = setting(16, "Clips (or frames / 16) per detector call.", group="Machine")
    device: str = setting("auto", "Where it runs (auto: CUDA when there is one).", group="Machine")
    detectors: list[str] | None = setting(None, "Detector file: NAME=PATH with NAME i3d, inception or c3d "
                                          "(repeat).", flag="--detector", default_text="the cache, else a download",
                                          group="Detectors and models")
    embedder: str | None = setting(None, "ACD's frame embedder (trained weights): a TorchScript file, "
                                   "identity:faces, identity:FILE or timm:NAME with --embedder-weights "
                                   "(docs/evaluation.md).", group="Detectors and models")
    embedder_weights: str | None = setting(None, "Weights for --embedder timm:NAME (.safetensors or a state dict; "
                                           "required: a timm model without them is a random network).",
                                           group="Detectors and models")
    cache: bool = setting(True, "Reuse real-data statistics cached for the same dataset, protocol and detector.",
                          group="Detectors and models")
    encoder: str | None = setting(None, "prediction: an encoder from `mocohd train-encoder` for the backbone (the "
                                  "inversion's starting guess and features).",
                                  default_text=f"none: the best of {DEFAULT_CANDIDATES} latents, pixel loss",
                                  group="Detectors and models")
    inversion_steps: int = setting(DEFAULT_STEPS, "prediction: optimisation steps of each first frame's inversion.",
                                   group="Detectors and models")

    def validate(self) -> None:
        check_setting_types(self)
        require_positive(self, ("num_videos", "frames", "batch_size", "time_step"))
        if self.time_step is not None and self.time_step > 1000:
            raise MocohdError(f"--time-step must be <= 1000, got {self.time_step}", fix="training uses 1 or 2")
        if not 0 <= self.seed < 2**62:  # offsets are added to it (GROUND_TRUTH_REAL_SEED) before numpy/torch see it
            raise MocohdError(f"--seed must be in [0, 2**62), got {self.seed}", fix="use a non-negative seed")
        if self.fake and self.motion:
            raise MocohdError("--fake and --motion both given", fix="evaluate a folder (--fake) or a model (--motion)")
        if not self.fake and not self.motion:
            raise MocohdError("nothing to evaluate", fix="pass --fake FOLDER (from `mocohd sample`) or --motion "
                                                         "MODEL [--checkpoint C]")


def run_evaluation(settings: EvalSettings, *, fake=None, context: DistContext | None = None) -> EvalResult:
    """The metrics of `settings` on its generated videos, or on `fake` (a VideoSource with a
    `resolution`, e.g. GeneratedVideos of a model in training).

    Under torchrun (`context`, infra/distributed.py) the feature metrics and ACD deal their batches
    of generated videos and real clips over the ranks, and rank 0 gathers the features: its result
    is the one process's to 1e-6 or better (the same features, added up in the same order). The
    ground-truth metrics deal the generated videos likewise (each rank generates and reads its batches;
    the real videos are rendered and read on rank 0); prediction runs on rank 0 alone. Only rank 0's
    result holds values."""
    if fake is None:
        settings.validate()
    names = list(dict.fromkeys(settings.metrics or ["fvd16"]))
    metrics = [get_metric(name) for name in names]
    device = context.device if context is not None else resolve_device(settings.device)
    main = context is None or context.is_main
    fake = fake or _fake_source(settings, device)
    resolution = settings.resolution or fake.resolution
    fake.size = resolution
    needs_real = [m.name for m in metrics if m.needs_real and m.name not in GROUND_TRUTH]
    if needs_real and not settings.real:
        raise MocohdError(f"{_listed(needs_real)} {'compares' if len(needs_real) == 1 else 'compare'} with real "
                          "videos", fix="pass --real DATA (or a "
                                                                                    "statistics file)")
    overrides = parse_detector_options(settings.detectors)
    result = EvalResult(values={}, protocol={
        "real": settings.real, "fake": fake.description, "fake_videos": settings.num_videos,
        "resolution": resolution, "seed": settings.seed, "mocohd_version": __version__, "detectors": {},
        "real_statistics": {}})
    features: dict[str, tuple] = {}
    for metric in metrics:
        if metric.name in GROUND_TRUTH:
            continue
        if metric.name == "acd":
            _acd(settings, fake, resolution, device, result, context)
            continue
        if metric.name == "prediction":
            if not main:
                continue
            evaluate_prediction(settings, fake, result)
            continue
        kind = metric.kind
        if kind.key not in features:
            features[kind.key] = _features(kind, settings, fake, resolution, device, overrides, result,
                                           real_needed=metric.needs_real, context=context)
        real_stats, fake_stats = features[kind.key]
        if main:
            _score(metric, real_stats, fake_stats, result, settings)
    ground_truth = [m.name for m in metrics if m.name in GROUND_TRUTH]
    if ground_truth:
        _ground_truth(ground_truth, settings, fake, result, context)
    # the videos actually scored: a folder of 6 videos scores 6, whatever --num-videos asked for
    result.protocol["fake_videos"] = getattr(fake, "used", None) or settings.num_videos
    return result


def _listed(names: list[str]) -> str:
    """["a"] -> "a", ["a", "b"] -> "a and b", ["a", "b", "c"] -> "a, b and c"."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


# Real videos for the ground-truth metrics are rendered with this seed (+ --seed): never the videos of
# `mocohd data make` with its small default seeds, so a model is not scored on its training videos.
GROUND_TRUTH_REAL_SEED = 1_000_000
# the headline number of each ground-truth family (the rest goes to the details)
GROUND_TRUTH_HEADLINES = {"motion": "ffd", "content": "identity_drift_ratio", "frames": "fid"}


def _ground_truth(names: list[str], settings: EvalSettings, fake, result: EvalResult,
                  context: DistContext | None = None) -> None:
    """The procedural domains' metrics: generated videos against freshly rendered real ones, read
    by the domain's factor reader (mocohd_cli/evaluation/groundtruth.py). Each rank generates and
    reads its dealt batches of generated videos (alone: every batch, read batch by batch too, so that
    1 or N processes read the same batches); rank 0 gathers the readings and scores."""
    domain = settings.domain
    if domain is None and settings.real and Path(settings.real).is_dir():
        domain = (dataset_settings(settings.real) or {}).get("domain")
    if domain is None:
        raise MocohdError(f"{_listed(names)} {'needs' if len(names) == 1 else 'need'} a procedural domain",
                          path=settings.real,
                          fix="pass --domain NAME (`mocohd data list`), or --real a dataset made by `mocohd data make`")
    # rank 0 loads first: a reader that is not shipped is trained once and cached, then the others read it
    first = context is None or context.is_main
    if not first:
        context.barrier()
    reader = load_reader(domain)
    if first and context is not None:
        context.barrier()
    readings = [read_videos(reader, clips) for clips in fake.clips(settings.frames, settings.batch_size,
                                                                   share_of(context))]
    factors = gather_batches(context, [torch.from_numpy(r.factors) for r in readings])
    features = gather_batches(context, [torch.from_numpy(r.features) for r in readings])
    if factors is None:  # a rank other than 0
        return
    if not factors:
        raise MocohdError("no generated video to score", fix="generate at least one video (--num-videos)")
    fake_read = Readings(torch.cat(factors).numpy(), torch.cat(features).numpy())
    real_seed = GROUND_TRUTH_REAL_SEED + settings.seed
    step = settings.time_step or getattr(fake, "time_step", 1)
    real = render_real(domain, settings.num_videos, (settings.frames - 1) * step + 1, reader.size,
                       seed=real_seed)[:, ::step]
    real_read = read_videos(reader, real)
    families = {"motion": motion_metrics, "content": content_metrics, "frames": frames_metrics}
    for name in names:
        details = families[name](reader, real_read, fake_read)
        result.values[name] = details[GROUND_TRUTH_HEADLINES[name]]
        result.details[name] = details
    result.protocol["ground_truth"] = {"domain": domain, "real_seed": real_seed, "real_videos": len(real),
                                       "fake_videos": fake_read.n_videos, "frames": settings.frames, "time_step": step,
                                       "reader": {k: v for k, v in reader.metadata().items()
                                                  if k in ("domain", "size", "r2", "min_r2", "arch", "training")}}


def _fake_source(settings: EvalSettings, device: torch.device):
    if settings.fake:
        source = FolderVideos(settings.fake, size=settings.resolution, max_videos=settings.num_videos)
        source.resolution = source.native_resolution()
        return source
    backbone, motion, info = load_motion_and_backbone(settings.motion, checkpoint=settings.checkpoint,
                                                      backbone=settings.backbone, device=device,
                                                      truncation=settings.truncation)
    source = GeneratedVideos(backbone, motion, num_videos=settings.num_videos, seed=settings.seed)
    source.resolution = backbone.resolution
    source.time_step = int(info.get("time_step") or 1)  # one generated step spans this many training frames
    return source


def _features(kind: FeatureKind, settings: EvalSettings, fake, resolution: int, device, overrides, result,
              *, real_needed: bool, context: DistContext | None = None):
    """(real statistics or None, fake statistics) of one feature kind."""
    network = load_detector(kind.detector, device, overrides)
    sha = network.sha256
    result.protocol["detectors"][kind.detector] = {"file": str(network.path), "sha256": sha}
    real_stats = None
    if real_needed:
        if Path(settings.real).suffix == ".npz" and Path(settings.real).is_file():
            saved = load_stats(settings.real)
            if kind.key not in saved:
                raise MocohdError(f"this statistics file has no {kind.key} statistics (it has "
                                  f"{', '.join(saved)})", path=settings.real,
                                  fix="write them with `mocohd eval stats DATA --metric ... --out FILE`")
            real_stats, protocol = saved[kind.key]
            if protocol.get("detector_sha256") != sha:
                raise MocohdError(f"these statistics were computed with another {kind.detector} detector "
                                  f"(sha256 {protocol.get('detector_sha256')}, now {sha})", path=settings.real,
                                  fix="recompute them with this detector, or pass the one they were made with")
        else:
            real = real_videos(settings.real, size=resolution, max_videos=settings.num_videos, seed=settings.seed)
            real_stats, protocol = cached_real_stats(kind, real, network, sha, resolution=resolution,
                                                     batch_size=settings.batch_size, use_cache=settings.cache,
                                                     context=context)
        result.protocol["real_statistics"][kind.key] = protocol
    fake_stats = extract(kind, fake, network, batch_size=settings.batch_size,
                         total=None if kind.n_frames == 0 else settings.num_videos, label="generated videos",
                         context=context)
    if fake_stats is not None:  # None on the ranks other than 0
        result.protocol.setdefault("fake_counts", {})[kind.key] = fake_stats.count
    return real_stats, fake_stats


def _acd(settings: EvalSettings, fake, resolution: int, device, result: EvalResult,
         context: DistContext | None = None) -> None:
    """ACD of the generated videos, and of the real ones (the reference) when --real is a dataset."""
    if not settings.embedder:
        raise MocohdError("acd needs a frame embedder", fix="pass --embedder FILE.pt (TorchScript), --embedder "
                                                            "identity:faces, or --embedder timm:NAME "
                                                            "--embedder-weights FILE")
    embedder = load_embedder(settings.embedder, settings.embedder_weights, device)
    result.protocol["detectors"]["embedder"] = {"file": embedder.description, "sha256": embedder.sha256}
    fake_acd = average_content_distance(fake, embedder, n_frames=settings.frames, batch_size=settings.batch_size,
                                        context=context)
    if fake_acd is not None:  # None on the ranks other than 0
        result.values["acd"], result.details["acd"] = fake_acd[0], {"videos": fake_acd[1], "frames": settings.frames}
    if settings.real and Path(settings.real).suffix != ".npz":
        real = real_videos(settings.real, size=resolution, max_videos=settings.num_videos, seed=settings.seed)
        real_acd = average_content_distance(real, embedder, n_frames=settings.frames,
                                            batch_size=settings.batch_size, context=context)
        if real_acd is not None:
            result.details["acd"].update(real=real_acd[0], real_videos=real_acd[1])


def _score(metric, real_stats, fake_stats, result: EvalResult, settings: EvalSettings) -> None:
    if metric.name in ("fvd16", "fvd128", "fid"):
        result.values[metric.name] = frechet_distance(fake_stats.mean, fake_stats.cov, real_stats.mean, real_stats.cov)
    elif metric.name in ("kvd", "kid"):
        result.values[metric.name] = kernel_distance(fake_stats.features, real_stats.features, seed=settings.seed)
    elif metric.name == "isv":
        mean, std = inception_score(fake_stats.features)
        result.values["isv"], result.details["isv"] = mean, {"mean": mean, "std": std, "splits": 10}
