"""Loss curves of short training runs in several precisions: does bf16 training track fp32?

Each run trains the built-in in-domain example (the shipped 64 px "faces" backbone on the rendered
faces videos, `mocohd train`'s schedule: 8-frame clips, LSTM 128, discriminators 32 wide, lr 5e-4)
for --iterations iterations with the Trainer's own step, and records every iteration's generator
and discriminator loss totals. Runs are given as PRECISION:SEED; fp32 under two seeds measures the
run-to-run noise, which a bf16 run of the first seed is compared with. Losses are averaged over
windows of --window iterations (single iterations are dominated by the batch drawn).

Usage: python benchmarks/train_curves.py [--iterations 200] [--runs fp32:0,fp32:1,bf16:0]
       [--batch 2] [--window 20] [--threads N] [--json PATH]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from mocohd_cli.data.clips import clip_loader
from mocohd_cli.infra.distributed import DistContext
from mocohd_cli.training.trainer import Trainer
from mocohd_cli.workflows.builtin import default_train_config


def run(precision: str, seed: int, iterations: int, batch: int, out: Path) -> dict[str, list[float]]:
    """Per-iteration loss totals ("g", "d") of one run, and its seconds per iteration."""
    config = default_train_config(precision=precision, seed=seed, iterations=iterations, batch_size=batch,
                                  out=str(out), num_samples=0, device="cpu")
    trainer = Trainer(config, DistContext(0, 1, 0, torch.device("cpu")), progress=False)
    batches = clip_loader(trainer.dataset, batch, seed=seed, rank=0, world_size=1, start_batch=0, workers=0)
    curves: dict[str, list[float]] = {"g": [], "d": []}
    start = time.perf_counter()
    for _ in range(iterations):
        logged = trainer.iteration(next(batches))
        for side in curves:
            curves[side].append(sum(v.item() for k, v in logged.items() if k.startswith(side + "/")))
    curves["seconds_per_iteration"] = [(time.perf_counter() - start) / iterations]
    return curves


def windows(values: list[float], size: int) -> list[float]:
    return [sum(values[i:i + size]) / len(values[i:i + size]) for i in range(0, len(values), size)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--runs", default="fp32:0,fp32:1,bf16:0", help="comma-separated PRECISION:SEED")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--window", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", default=None, help="also write the per-iteration losses here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    runs = [(name.split(":")[0], int(name.split(":")[1])) for name in args.runs.split(",")]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for precision, seed in runs:
            results[f"{precision}:{seed}"] = run(precision, seed, args.iterations, args.batch, Path(tmp) / f"{precision}-{seed}")
    if args.json:
        Path(args.json).write_text(json.dumps(results))

    names = list(results)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads; built-in faces example, batch "
          f"{args.batch}, {args.iterations} iterations; losses averaged over windows of {args.window}")
    for side, title in (("g", "generator loss (sum of its terms)"), ("d", "discriminator loss (sum of its terms)")):
        print(f"\n{title}")
        print("| iterations | " + " | ".join(names) + " |")
        print("| --- | " + " | ".join("---" for _ in names) + " |")
        curves = {name: windows(results[name][side], args.window) for name in names}
        for index in range(len(curves[names[0]])):
            first, last = index * args.window + 1, min((index + 1) * args.window, args.iterations)
            print(f"| {first}-{last} | " + " | ".join(f"{curves[name][index]:.4f}" for name in names) + " |")
        # distance of each run's windowed curve from the first run's (mean absolute difference)
        reference = curves[names[0]]
        for name in names[1:]:
            gap = sum(abs(a - b) for a, b in zip(curves[name], reference)) / len(reference)
            print(f"mean |{name} - {names[0]}| over the windows: {gap:.4f}")
    print("\nseconds per iteration: " + ", ".join(f"{name} {results[name]['seconds_per_iteration'][0]:.2f}"
                                                 for name in names))


if __name__ == "__main__":
    main()
