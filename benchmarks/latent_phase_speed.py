"""Latent-phase throughput against the rendering trainer, in one run (issue 35).

Builds one motion-training task on the built-in in-domain example (`mocohd train`'s defaults: the
faces backbone, the example videos and their shipped projections) with a latent phase, times
`--steps` of its latent steps, then `--steps` of its rendered iterations (each g_steps generator
updates and one discriminator update, every frame rendered), and prints both rates and their ratio.

Usage: python benchmarks/latent_phase_speed.py [--steps 20] [--threads 2]
"""
from __future__ import annotations

import argparse
import tempfile
import time

import torch

from mocohd_cli.infra.distributed import init_distributed
from mocohd_cli.training.trainer import Trainer
from mocohd_cli.workflows.builtin import default_train_config


def rate(trainer: Trainer, steps: int) -> float:
    trainer.train_step()  # warm-up (first allocations, lazy setup)
    started = time.perf_counter()
    for _ in range(steps):
        losses = trainer.train_step()
    float(sum(v.sum() for v in losses.values()))  # wait for the last step's numbers
    return steps / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as out:
        config = default_train_config(out=out, latent_iterations=args.steps + 1, iterations=args.steps + 1,
                                      num_samples=0, workers=0)
        trainer = Trainer(config, init_distributed("cpu"), progress=False)
        trainer.on_loop_start(trainer.engine)
        latent = rate(trainer, args.steps)
        assert trainer.phase == "latent" and trainer.step == args.steps + 1
        rendered = rate(trainer, args.steps)
        assert trainer.phase == "rendered"
    print(f"{args.threads} threads, the built-in example (frames {config.frames}, batch {config.batch_size}, "
          f"latent batch {config.latent_batch} x {config.latent_samples} walks)")
    print("| step | steps/s | videos judged per second | ratio |")
    print("| --- | --- | --- | --- |")
    print(f"| rendered iteration ({config.g_steps} G + 1 D updates) | {rendered:.2f} | "
          f"{rendered * config.batch_size * (config.g_steps + 1):.1f} | 1.0x |")
    print(f"| latent-phase step | {latent:.2f} | {latent * config.latent_batch * config.latent_samples:.1f} | "
          f"{latent / rendered:.1f}x |")


if __name__ == "__main__":
    main()
