"""In-domain training speed: iterations/s of the real training step, where the time goes,
and the same step with frames pushed through the generator one at a time.

One iteration = g_steps (5) motion-generator updates + 1 discriminator update, exactly as
`mocohd train` runs it (the Trainer's own step). The time is split into
- generator forward: content codes, LSTM rollout, frame synthesis, pooling;
- discriminators: every discriminator forward pass in both losses (incl. the gradient
  penalty's input gradient);
- backward + optimiser: the rest.
The naive variant is the same step with `synthesize` called once per frame (the noise maps
still shared by a video's frames), as a straightforward port of the release would do. --unshared
adds the step with the generator loss as it was before the real clips' discriminator outputs were
shared by the G steps (one pass over real and fake at every step).

With several --precision values (e.g. fp32,bf16) the batched step is measured in each, one after
the other in the same run, and the time per iteration is compared with the first; `bf16:sampling`
trains under the backbone's sampling policy instead of its training one (PRECISION_POLICIES in
plugins/stylegan2/generator.py). --width gives every resolution of the generator that many
channels (the 512-channel configuration).

Usage: python benchmarks/train_speed.py [--size 64] [--frames 16] [--batch 2] [--iterations 3]
       [--device auto] [--precision fp32[,bf16[,bf16:sampling]]] [--width N] [--no-naive] [--unshared] [--threads N]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mocohd_cli.infra.device import resolve_device
from mocohd_cli.infra.distributed import DistContext
from mocohd_cli.data.clips import clip_span
from mocohd_plugins.stylegan2 import StyleGAN2Generator
from mocohd_cli.training import TrainConfig
from mocohd_cli.models.losses import ra_lsgan_g_loss
from mocohd_cli.models.motion import mutual_information_loss
from mocohd_cli.training.objectives import InDomainObjective
from mocohd_cli.training.trainer import Trainer


def make_videos(root: Path, n_videos: int, n_frames: int, size: int) -> None:
    rng = np.random.default_rng(0)
    for v in range(n_videos):
        folder = root / f"video{v}"
        folder.mkdir(parents=True)
        for i in range(n_frames):
            Image.fromarray((rng.random((size, size, 3)) * 255).astype(np.uint8)).save(folder / f"img_{i:04d}.png")


def per_frame_synthesis(backbone):
    """synthesize() one frame at a time; the generator state is rewound so every frame of a
    video gets the same noise maps, as the batched call gives them."""
    batched = backbone.synthesize

    def synthesize(latents, *, condition=None, noise="random", rng=None):
        start = rng.get_state() if rng is not None else None
        frames = []
        for t in range(latents.shape[1]):
            if start is not None:
                rng.set_state(start)
            frames.append(batched(latents[:, t:t + 1], condition=condition, noise=noise, rng=rng))
        return torch.cat(frames, dim=1)

    return synthesize


class Timers:
    def __init__(self, device: torch.device):
        self.device, self.seconds = device, defaultdict(float)

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def wrap(self, name: str, fn):
        def timed(*args, **kwargs):
            self.sync()
            start = time.perf_counter()
            out = fn(*args, **kwargs)
            self.sync()
            self.seconds[name] += time.perf_counter() - start
            return out

        return timed


def unshared_g_loss(objective: InDomainObjective):
    """The in-domain generator loss as it was before the real side was shared (RealSide in
    mocohd_cli/training/objectives/base.py): real and fake clips through each discriminator in one
    pass at every G step, the backward pass running through both halves. Same values."""
    def g_loss(real, fake, rollout, *, rng):
        return {"video": ra_lsgan_g_loss(*objective._video_outputs(real, fake, rng)),
                "image": ra_lsgan_g_loss(*objective._image_outputs(real, fake, rng)),
                "mi": mutual_information_loss(rollout.noise, rollout.noise_pred)}

    return g_loss


class Variant:
    """One way of running the step. Variants are timed one iteration at a time in turns, so that
    a change of the machine's load (it is shared) falls on all of them alike."""

    def __init__(self, trainer: Trainer, real: torch.Tensor, *, g_loss=None, synthesize=None):
        self.trainer, self.real, self.g_loss, self.synthesize = trainer, real, g_loss, synthesize
        self.timers, self.iterations, self.total = Timers(trainer.device), 0, 0.0

    def iteration(self) -> None:
        trainer, timers = self.trainer, self.timers
        objective = trainer.objective
        trainer.generate = timers.wrap("generator forward", trainer.generate)
        objective.g_loss = timers.wrap("discriminators", self.g_loss or objective.g_loss)
        objective.d_loss = timers.wrap("discriminators", objective.d_loss)
        if self.synthesize is not None:
            trainer.backbone.synthesize = self.synthesize
        try:
            timers.sync()
            start = time.perf_counter()
            trainer.iteration(self.real)
            timers.sync()
            self.total += time.perf_counter() - start
            self.iterations += 1
        finally:
            del trainer.generate, objective.g_loss, objective.d_loss
            if self.synthesize is not None:
                del trainer.backbone.synthesize

    def warm_up(self) -> None:
        self.iteration()
        self.timers.seconds.clear()
        self.iterations, self.total = 0, 0.0

    def result(self) -> dict[str, float]:
        """Mean seconds per iteration: total and its parts."""
        parts = {k: v / self.iterations for k, v in self.timers.seconds.items()}
        parts["backward + optimiser"] = self.total / self.iterations - sum(parts.values())
        parts["total"] = self.total / self.iterations
        return parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64, help="backbone resolution")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--frame-size", type=int, default=64, help="video_frame_size (discriminator input)")
    parser.add_argument("--d-channels", type=int, default=32, help="discriminator width (the release: 64)")
    parser.add_argument("--width", type=int, default=None,
                        help="channels of every generator resolution, with a 512-d W (default: a small model)")
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="fp32", help="one or more, comma-separated: fp32,bf16")
    parser.add_argument("--no-naive", action="store_true", help="skip the one-frame-at-a-time variant")
    parser.add_argument("--unshared", action="store_true",
                        help="also measure the last precision with the real side judged at every G step (as before)")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    precisions = args.precision.split(",")
    torch.manual_seed(0)
    if args.width:
        widths, style_dim, n_mlp = {2 ** i: args.width for i in range(2, args.size.bit_length())}, 512, 8
    else:  # a small StyleGAN2: 256-d W, widths halving from 256 at 4 px down to 32 (a laptop-sized model)
        widths, style_dim, n_mlp = {2 ** i: max(32, 256 >> max(0, i - 3)) for i in range(2, args.size.bit_length())}, 256, 4
    backbone = StyleGAN2Generator(args.size, style_dim=style_dim, n_mlp=n_mlp, channels=widths).freeze().to(device)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "videos"
        make_videos(data, 2, clip_span(args.frames, 2), args.frame_size)
        variants = {}
        for name in precisions:
            precision, _, use = name.partition(":")
            config = TrainConfig(data=str(data), out=str(Path(tmp) / f"run-{name}"), frames=args.frames,
                                 time_step=2, video_frame_size=args.frame_size, batch_size=args.batch, h_dim=128,
                                 n_pca=128, d_channels=args.d_channels, pca_samples=4096, workers=0,
                                 device=str(device), precision=precision)
            trainer = Trainer(config, DistContext(0, 1, 0, device), backbone=backbone, progress=False)
            trainer.precision_use = use or trainer.precision_use
            real = trainer.dataset[(0, 0)][None].repeat(args.batch, 1, 1, 1, 1).to(device)
            variants[name] = Variant(trainer, real)
        if args.unshared:
            variants[f"unshared ({precisions[-1]})"] = Variant(trainer, real, g_loss=unshared_g_loss(trainer.objective))
        if not args.no_naive:
            variants[f"per-frame ({precisions[-1]})"] = Variant(trainer, real,
                                                                synthesize=per_frame_synthesis(trainer.backbone))
        for variant in variants.values():
            variant.warm_up()
        for _ in range(args.iterations):
            for variant in variants.values():
                variant.iteration()
        results = {name: variant.result() for name, variant in variants.items()}

    print(f"torch {torch.__version__}, device {device}, {torch.get_num_threads()} CPU threads; StyleGAN2 "
          f"{args.size} px (W {style_dim}), widths {widths[4]}..{widths[args.size]}, {args.frames} frames -> "
          f"{args.frame_size} px, batch {args.batch}, discriminator width {args.d_channels}, {config.g_steps} G "
          f"steps + 1 D step per iteration, mean of {args.iterations} (variants in turns)")
    columns = list(results)
    rows = [("part", *[f"{name} s/it  share" for name in columns])]
    for part in ("generator forward", "discriminators", "backward + optimiser", "total"):
        rows.append((part, *[f"{r[part]:.3f}  {r[part] / r['total']:.0%}" for r in results.values()]))
    rows.append(("iterations/s", *[f"{1 / r['total']:.3f}" for r in results.values()]))
    widths_ = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for index, row in enumerate(rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths_)))
        if index == 0:
            print("  ".join("-" * width for width in widths_))
    first = results[precisions[0]]
    for name in columns[1:]:
        print(f"{name} / {precisions[0]} time per iteration: {results[name]['total'] / first['total']:.2f} "
              f"(generator forward alone: {results[name]['generator forward'] / first['generator forward']:.2f})")


if __name__ == "__main__":
    main()
