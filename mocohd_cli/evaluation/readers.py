"""Factor readers: small CNNs that read a procedural domain's generating factors off a frame.

A procedural domain (mocohd_cli.data.domains) renders every video from known factors: per-frame
motion factors (a face's yaw, mouth opening, ...) and per-video content factors (its skin colour,
hair style, ...). A `FactorReader` is a small ResNet (timm, random init, ~1.2M parameters) trained
on freshly rendered frames to regress all of them from a single frame, each target standardised by
its mean and standard deviation over the training frames. Reading generated videos with it turns
them into factor trajectories that can be compared with real ones (see `groundtruth`).

Targets, from one rendered video (`video_targets`):
    motion factors   every `video.motion` entry, one value per frame, in the domain's own units
    content factors  the same for every frame of a video: colours (3 numbers) as RGB / 255 with
                     names `<name>_r/_g/_b`, 2-vectors as `<name>_x/_y`, categories as one-hot
                     (`CATEGORIES`), booleans as 0/1, other numbers as they are

Seeds: a reader trained with `seed=s` renders its training videos with the domain seed
`READER_SEED_BASE + 2 s` and its held-out videos with `READER_SEED_BASE + 2 s + 1`;
`groundtruth.render_real` only takes seeds below READER_SEED_BASE, so real evaluation videos are
never frames a reader was trained or scored on.

Files: `<domain>_<size>.safetensors`, the weights (floating tensors stored as fp16) with JSON
metadata (domain, size, factor names, target statistics, held-out R^2 per factor, architecture,
training settings). `load_reader` looks for the shipped file in mocohd_cli/assets/readers/, then
for a cached one under <cache>/readers/, and otherwise trains one and caches it.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data.domains import Domain, RenderedVideo, get_domain
from ..infra.console import progress
from ..infra.errors import MocohdError
from ..infra.files import cache_dir, read_safetensors, write_safetensors
from ..infra.schema import decode_metadata

FORMAT = "mocohd-factor-reader"
FORMAT_VERSION = 1
READER_SEED_BASE = 2**30
SHIPPED_DIR = Path(__file__).resolve().parents[1] / "assets" / "readers"
MIN_R2 = 0.5          # factors read worse than this on held-out videos are left out of metrics

# categorical content factors (integer codes) read as one-hot: name -> names of the categories
CATEGORIES = {"hair_style": ("short", "long", "bun")}
# factors that no single frame determines, so a reader is neither trained on nor scored for them:
# the sky's clouds are a fresh random noise field per video seen at a random offset (cloud_x/_y
# start anywhere in [0, 1000) px), and its wind is a velocity. Trained on them, a reader only
# memorises its training videos (held-out R^2 -0.35 to -0.6) and reads the other factors worse.
NOT_IN_A_FRAME = {"sky": ("cloud_x", "cloud_y", "wind_x", "wind_y")}

DEFAULT_ARCH = {"channels": [32, 64, 128, 256], "layers": [1, 1, 1, 1], "stem_width": 16,
                "stem_type": "deep"}
DEFAULT_TRAINING = {"n_videos": 3000, "frames_per_video": 4, "heldout_videos": 300, "steps": 1200,
                    "batch_size": 128, "lr": 2e-3, "weight_decay": 1e-4}


# ----------------------------------------------------------------------------------------- targets

def video_targets(video: RenderedVideo, skip: tuple[str, ...] = ()) -> tuple[list[str], list[str], np.ndarray]:
    """(motion names, content names, targets [T, n_motion + n_content] float64) of one video,
    leaving out the target names in `skip`."""
    n_frames = len(video.frames)
    motion_names = list(video.motion)
    columns = [np.asarray(video.motion[name], np.float64).reshape(n_frames) for name in motion_names]
    content_names, values = [], []
    for name, value in video.content.items():
        if name in CATEGORIES:
            for k, label in enumerate(CATEGORIES[name]):
                content_names.append(f"{name}_{label}")
                values.append(float(int(value) == k))
            continue
        if isinstance(value, (bool, np.bool_)):
            content_names.append(name)
            values.append(float(value))
            continue
        array = np.asarray(value, np.float64).reshape(-1)
        if array.size == 1:
            content_names.append(name)
            values.append(float(array[0]))
        elif array.size == 3:       # a colour
            content_names.extend(f"{name}_{c}" for c in "rgb")
            values.extend(array / 255.0)
        elif array.size == 2:
            content_names.extend(f"{name}_{c}" for c in "xy")
            values.extend(array)
        else:
            content_names.extend(f"{name}_{i}" for i in range(array.size))
            values.extend(array)
    columns.extend(np.full(n_frames, v) for v in values)
    keep = [k for k, name in enumerate(motion_names + content_names) if name not in skip]
    motion_names = [n for n in motion_names if n not in skip]
    content_names = [n for n in content_names if n not in skip]
    return motion_names, content_names, np.stack(columns, axis=1)[:, keep]


def _render_chunk(domain_name: str, seed: int, indices: list[int], n_frames: int, size: int):
    """Frames [n, T, S, S, 3] uint8 and targets [n, T, K] of some videos (a worker's share)."""
    domain = get_domain(domain_name)
    frames, targets, names = [], [], None
    for index in indices:
        video = domain.video(seed, index, n_frames, size)
        motion_names, content_names, values = video_targets(video, NOT_IN_A_FRAME.get(domain_name, ()))
        names = (motion_names, content_names)
        frames.append(video.frames)
        targets.append(values)
    return np.stack(frames), np.stack(targets), names


def render_training_set(domain: str | Domain, *, seed: int, n_videos: int, n_frames: int, size: int,
                        workers: int = 1, label: str | None = None):
    """Render videos 0..n_videos-1 of a domain seed: (frames uint8 [N, T, 3, S, S], targets float64
    [N, T, K], motion names, content names). The result does not depend on `workers`."""
    name = domain if isinstance(domain, str) else domain.name
    chunk = max(1, min(64, math.ceil(n_videos / max(1, workers))))
    parts = [list(range(i, min(i + chunk, n_videos))) for i in range(0, n_videos, chunk)]
    results = []
    with progress() as bar:
        task = bar.add_task(label or f"rendering {name}", total=n_videos)
        if workers > 1 and len(parts) > 1 and sys.platform.startswith("linux"):
            # fork, not spawn: spawn re-runs the caller's script, which need not be import-safe;
            # the workers only run numpy and Pillow
            with ProcessPoolExecutor(workers, mp_context=get_context("fork")) as pool:
                futures = [pool.submit(_render_chunk, name, seed, part, n_frames, size) for part in parts]
                for future, part in zip(futures, parts):
                    results.append(future.result())
                    bar.advance(task, len(part))
        else:
            for part in parts:
                results.append(_render_chunk(name, seed, part, n_frames, size))
                bar.advance(task, len(part))
    frames = torch.from_numpy(np.concatenate([r[0] for r in results])).permute(0, 1, 4, 2, 3).contiguous()
    targets = np.concatenate([r[1] for r in results])
    motion_names, content_names = results[0][2]
    return frames, targets, motion_names, content_names


# ------------------------------------------------------------------------------------------ reader

def _backbone(arch: dict, n_outputs: int) -> nn.Module:
    from timm.models.resnet import BasicBlock, ResNet

    return ResNet(BasicBlock, list(arch["layers"]), channels=tuple(arch["channels"]),
                  stem_width=int(arch["stem_width"]), stem_type=str(arch["stem_type"]), num_classes=n_outputs)


def resize_frames(frames: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 or float frames [N, 3, H, W] -> float [N, 3, size, size] in [0, 255] (antialiased)."""
    x = frames.float()
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x


class FactorReader(nn.Module):
    """Reads a domain's motion and content factors off single frames.

    `read(frames)` -> {factor name: tensor} in the factors' own units; `features(frames)` -> the
    penultimate (pooled) features. Frames are uint8 [N, 3, H, W] or [N, T, 3, H, W] of any square
    size (resized to `size` with antialiasing); results keep the leading [N] or [N, T] shape.
    """

    def __init__(self, domain: str, size: int, motion_names: list[str], content_names: list[str], *,
                 arch: dict | None = None, r2: dict | None = None, settings: dict | None = None,
                 mean: torch.Tensor | None = None, std: torch.Tensor | None = None):
        super().__init__()
        self.domain, self.size = domain, int(size)
        self.motion_names, self.content_names = list(motion_names), list(content_names)
        self.factor_names = self.motion_names + self.content_names
        self.arch = dict(arch or DEFAULT_ARCH)
        self.r2 = dict(r2 or {})
        self.settings = dict(settings or {})
        k = len(self.factor_names)
        self.net = _backbone(self.arch, k)
        self.register_buffer("target_mean", torch.zeros(k) if mean is None else mean.float().clone())
        self.register_buffer("target_std", torch.ones(k) if std is None else std.float().clone())
        self.eval()

    @property
    def feature_dim(self) -> int:
        return self.net.num_features

    def usable(self, names: list[str] | None = None, min_r2: float | None = MIN_R2) -> list[str]:
        """Those of `names` (default all factors) whose held-out R^2 is at least `min_r2`
        (all of them when min_r2 is None, or when the reader has no R^2 recorded)."""
        names = self.factor_names if names is None else names
        if min_r2 is None or not self.r2:
            return list(names)
        return [n for n in names if self.r2.get(n, -math.inf) >= min_r2]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Float frames [N, 3, size, size] in [0, 255] -> (standardised factors [N, K], features [N, F])."""
        x = x / 127.5 - 1.0
        features = self.net.forward_head(self.net.forward_features(x), pre_logits=True)
        return self.net.fc(features), features

    @torch.no_grad()
    def run(self, frames: torch.Tensor, *, batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 frames [..., 3, H, W] -> (standardised factors [..., K], features [..., F]), in eval mode."""
        if frames.dim() < 4 or frames.shape[-3] != 3:
            raise MocohdError(f"frames of shape {tuple(frames.shape)} are not [N, 3, H, W] or [N, T, 3, H, W]",
                              fix="pass uint8 RGB frames, channels before height and width")
        lead = frames.shape[:-3]
        flat = frames.reshape(-1, *frames.shape[-3:])
        was_training = self.training
        self.eval()
        device = self.target_mean.device
        factors, features = [], []
        for start in range(0, len(flat), batch_size):
            x = resize_frames(flat[start:start + batch_size].to(device), self.size)
            f, h = self(x.contiguous(memory_format=torch.channels_last))
            factors.append(f.float().cpu())
            features.append(h.float().cpu())
        self.train(was_training)
        k, d = len(self.factor_names), self.feature_dim
        factors = torch.cat(factors) if factors else torch.zeros(0, k)
        features = torch.cat(features) if features else torch.zeros(0, d)
        return factors.reshape(*lead, k), features.reshape(*lead, d)

    def unstandardise(self, standardised: torch.Tensor) -> torch.Tensor:
        return standardised * self.target_std.cpu() + self.target_mean.cpu()

    def read(self, frames: torch.Tensor) -> dict[str, torch.Tensor]:
        """{factor name: values [N] or [N, T]} in the factors' own units."""
        values = self.unstandardise(self.run(frames)[0])
        return {name: values[..., k] for k, name in enumerate(self.factor_names)}

    def features(self, frames: torch.Tensor) -> torch.Tensor:
        """Penultimate features [N, F] (or [N, T, F]) of frames."""
        return self.run(frames)[1]

    # ------------------------------------------------------------------------------- files
    def metadata(self) -> dict:
        return {"format": FORMAT, "format_version": FORMAT_VERSION, "domain": self.domain, "size": self.size,
                "motion_names": self.motion_names, "content_names": self.content_names,
                "target_mean": [float(v) for v in self.target_mean], "target_std": [float(v) for v in self.target_std],
                "r2": self.r2, "not_in_a_frame": list(NOT_IN_A_FRAME.get(self.domain, ())), "arch": self.arch,
                "training": self.settings, "min_r2": MIN_R2}

    def save(self, path: str | Path) -> Path:
        """Write the reader (floating weights as fp16) with its metadata; atomic."""
        tensors = {k: (v.half() if v.is_floating_point() else v) for k, v in self.net.state_dict().items()}
        return write_safetensors(path, tensors, self.metadata())


def round_to_fp16(reader: FactorReader) -> FactorReader:
    """Round the reader's floating weights to fp16 precision (what `save` stores), in place."""
    with torch.no_grad():
        for tensor in reader.net.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(tensor.half().float())
    return reader


def read_reader_file(path: str | Path) -> FactorReader:
    """A FactorReader from a file written by `FactorReader.save`."""
    tensors, raw = read_safetensors(path, "factor reader")
    try:
        meta = decode_metadata(raw, source=path, what="factor reader metadata")
        if meta.get("format") != FORMAT:
            raise ValueError(f"format is {meta.get('format')!r}")
        reader = FactorReader(meta["domain"], meta["size"], meta["motion_names"], meta["content_names"],
                              arch=meta["arch"], r2=meta["r2"], settings=meta.get("training"),
                              mean=torch.tensor(meta["target_mean"]), std=torch.tensor(meta["target_std"]))
        reader.net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in tensors.items()})
    except (KeyError, ValueError, RuntimeError, json.JSONDecodeError) as exc:
        raise MocohdError(f"not a factor reader written by mocohd ({exc})", path=path,
                          fix="delete the file; `load_reader` trains and caches a new one") from exc
    return reader.eval()


def reader_file_name(domain: str, size: int) -> str:
    return f"{domain}_{int(size)}.safetensors"


def shipped_reader_path(domain: str, size: int = 64) -> Path:
    return SHIPPED_DIR / reader_file_name(domain, size)


def cached_reader_path(domain: str, size: int = 64) -> Path:
    return cache_dir() / "readers" / reader_file_name(domain, size)


def load_reader(domain: str, size: int = 64, *, train_settings: dict | None = None) -> FactorReader:
    """The shipped reader of a domain and size, else a cached one, else a newly trained one
    (`train_reader(domain, size=size, **train_settings)`, a few minutes, then cached)."""
    get_domain(domain)  # a clear error for unknown domains
    for path in (shipped_reader_path(domain, size), cached_reader_path(domain, size)):
        if path.exists():
            return read_reader_file(path)
    reader, _ = train_reader(domain, size=size, **(train_settings or {}))
    reader.save(cached_reader_path(domain, size))
    return reader


# ---------------------------------------------------------------------------------------- training

def r2_scores(predicted: np.ndarray, target: np.ndarray, names: list[str]) -> dict[str, float]:
    """Coefficient of determination per column: 1 - SSE / SST (SST about the target's own mean)."""
    predicted, target = np.asarray(predicted, np.float64), np.asarray(target, np.float64)
    sse = ((predicted - target) ** 2).sum(0)
    sst = ((target - target.mean(0)) ** 2).sum(0)
    return {name: float(1 - e / t) if t > 0 else float("nan") for name, e, t in zip(names, sse, sst)}


def train_reader(domain: str | Domain, *, size: int = 64, seed: int = 0, n_videos: int | None = None,
                 frames_per_video: int | None = None, heldout_videos: int | None = None, steps: int | None = None,
                 batch_size: int | None = None, lr: float | None = None, weight_decay: float | None = None,
                 arch: dict | None = None, workers: int | None = None, threads: int | None = None,
                 log=None) -> tuple[FactorReader, dict[str, float]]:
    """Train a factor reader on freshly rendered frames; returns (reader, held-out R^2 per factor).

    Renders `n_videos` training videos and `heldout_videos` other videos of `frames_per_video`
    frames, then runs `steps` AdamW steps (5 % warm-up, then cosine) on batches of frames drawn from
    all training videos, minimising the mean squared error of the standardised targets.
    Bit-identical for a seed and a torch thread count (rendering does not depend on `workers`). The
    returned reader's weights are rounded to fp16, as `save` stores them, and the R^2 is measured
    with those weights.
    """
    name = domain if isinstance(domain, str) else domain.name
    get_domain(name)
    opts = dict(DEFAULT_TRAINING)
    for key, value in (("n_videos", n_videos), ("frames_per_video", frames_per_video),
                       ("heldout_videos", heldout_videos), ("steps", steps), ("batch_size", batch_size),
                       ("lr", lr), ("weight_decay", weight_decay)):
        if value is not None:
            opts[key] = value
    if seed < 0 or READER_SEED_BASE + 2 * seed + 1 >= 2**31:
        raise MocohdError(f"reader seed {seed} is out of range", fix="use a seed in [0, 2**29)")
    arch = dict(arch or DEFAULT_ARCH)
    workers = workers if workers is not None else (min(4, os.cpu_count() or 1) if opts["n_videos"] >= 256 else 1)
    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    started = time.perf_counter()
    try:
        frames, targets, motion_names, content_names = render_training_set(
            name, seed=READER_SEED_BASE + 2 * seed, n_videos=opts["n_videos"], n_frames=opts["frames_per_video"],
            size=size, workers=workers, label=f"rendering {name} for its factor reader")
        held_frames, held_targets, _, _ = render_training_set(
            name, seed=READER_SEED_BASE + 2 * seed + 1, n_videos=opts["heldout_videos"],
            n_frames=opts["frames_per_video"], size=size, workers=workers, label=f"rendering held-out {name}")
        render_seconds = time.perf_counter() - started
        frames = frames.reshape(-1, *frames.shape[2:]).contiguous(memory_format=torch.channels_last)
        targets = targets.reshape(-1, targets.shape[-1])
        mean = targets.mean(0)
        std = targets.std(0)
        std = np.where(std > 1e-8, std, 1.0)
        y = torch.from_numpy((targets - mean) / std).float()

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            reader = FactorReader(name, size, motion_names, content_names, arch=arch,
                                  mean=torch.from_numpy(mean), std=torch.from_numpy(std))
            rng = torch.Generator().manual_seed(seed)
            reader.net.to(memory_format=torch.channels_last)
            optimiser = torch.optim.AdamW(reader.net.parameters(), lr=opts["lr"], weight_decay=opts["weight_decay"])
            total = int(opts["steps"])
            warmup = max(1, total // 20)
            schedule = torch.optim.lr_scheduler.LambdaLR(
                optimiser, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
            reader.train()
            n, batch = len(frames), min(int(opts["batch_size"]), len(frames))
            order, cursor = torch.randperm(n, generator=rng), 0
            with progress() as bar:
                task = bar.add_task(f"training the {name} factor reader", total=total)
                for step in range(total):
                    if cursor + batch > n:
                        order, cursor = torch.randperm(n, generator=rng), 0
                    index = order[cursor:cursor + batch]
                    cursor += batch
                    predicted, _ = reader(resize_frames(frames[index], size))
                    loss = F.mse_loss(predicted, y[index])
                    optimiser.zero_grad(set_to_none=True)
                    loss.backward()
                    optimiser.step()
                    schedule.step()
                    bar.advance(task)
                    if log is not None and (step % 100 == 0 or step == total - 1):
                        log(f"step {step} loss {loss.item():.4f} ({time.perf_counter() - started:.0f} s)")
        reader.eval()
        round_to_fp16(reader)
        held_frames = held_frames.reshape(-1, *held_frames.shape[2:])
        predicted = reader.unstandardise(reader.run(held_frames)[0]).double().numpy()
        r2 = r2_scores(predicted, held_targets.reshape(-1, held_targets.shape[-1]), reader.factor_names)
    finally:
        torch.set_num_threads(old_threads)
    seconds = time.perf_counter() - started
    reader.r2 = r2
    reader.settings = {**opts, "seed": seed, "size": size, "optimizer": "AdamW, cosine schedule, 5% warm-up",
                       "train_seed": READER_SEED_BASE + 2 * seed, "heldout_seed": READER_SEED_BASE + 2 * seed + 1,
                       "torch_threads": torch.get_num_threads() if not threads else threads, "workers": workers,
                       "render_seconds": round(render_seconds, 1), "seconds": round(seconds, 1),
                       "torch": torch.__version__}
    reader.net.to(memory_format=torch.contiguous_format)
    return reader, r2
