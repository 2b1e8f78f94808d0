"""Training-step speed by CPU thread setting, alone and beside a competing CPU process, in one run.

Each measurement runs in a fresh Python process (the OpenMP runtime reads its settings once, when torch
loads it), times --iterations training iterations of the in-domain Trainer (one iteration = 5 motion-
generator updates + 1 discriminator update, as `mocohd train` runs them; a small 64 px StyleGAN2, 8-frame
clips, batch 2), and prints iterations per second. Settings:

  torch default    what torch does unasked: one thread per core, idle threads spin (OMP_WAIT_POLICY unset)
  mocohd default   what a `mocohd` command does without --threads (mocohd_cli/infra/threads.py)
  cores, passive   one thread per core with OMP_WAIT_POLICY=PASSIVE (the default's wait policy, without
                   its load check)
  1 thread         --threads 1

each alone and beside --competitors busy processes (a pure-Python loop each, one core each; started
--lead seconds before the measurement so the load average sees them, and stopped when it ends; none
runs longer than --limit seconds). Settings are measured in turns, so a change of the machine's
own load falls on all of them alike. The machine's load average is printed beside each number: on a
shared machine "alone" means "without our competitor".

Usage: python benchmarks/threads.py [--iterations 4] [--competitors 1] [--lead 20] [--limit 300]
       [--settings "torch default,mocohd default,cores passive,1 thread"] [--rounds 1]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

SETTINGS = {
    # name: (environment added, --threads value for apply_threads or None, apply mocohd's setting)
    "torch default": ({}, None, False),
    "mocohd default": ({}, None, True),
    "cores passive": ({"OMP_WAIT_POLICY": "PASSIVE"}, "cores", True),
    "1 thread": ({}, 1, True),
}
_CLEARED = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "MOCOHD_THREADS")


def child(args) -> None:
    """One measurement: set the threads as `args.setting` says, time the training step, print JSON."""
    extra, threads, mocohd = SETTINGS[args.setting]
    if mocohd:
        from mocohd_cli.infra.threads import prepare_environment

        prepare_environment()
    import tempfile

    import torch

    from mocohd_cli.infra.threads import apply_threads, usable_cores

    if mocohd:
        setting = apply_threads(usable_cores() if threads == "cores" else threads)
        described = {"threads": setting.threads, "interop": setting.interop_threads, "source": setting.source,
                     "wait_policy": setting.omp_wait_policy}
    else:
        described = {"threads": torch.get_num_threads(), "interop": torch.get_num_interop_threads(),
                     "source": "torch", "wait_policy": os.environ.get("OMP_WAIT_POLICY")}
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from train_speed import make_videos  # noqa: E402  (the benchmarks' own helper)

    from mocohd_cli.data.clips import clip_span
    from mocohd_cli.infra.distributed import DistContext
    from mocohd_cli.training import TrainConfig
    from mocohd_cli.training.trainer import Trainer
    from mocohd_plugins.stylegan2 import StyleGAN2Generator

    torch.manual_seed(0)
    device = torch.device("cpu")
    widths = {2 ** i: max(32, 256 >> max(0, i - 3)) for i in range(2, 7)}
    backbone = StyleGAN2Generator(64, style_dim=256, n_mlp=4, channels=widths).freeze()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "videos"
        make_videos(data, 2, clip_span(args.frames, 2), 64)
        config = TrainConfig(data=str(data), out=str(Path(tmp) / "run"), frames=args.frames, time_step=2,
                             video_frame_size=64, batch_size=2, h_dim=128, n_pca=128, d_channels=32,
                             pca_samples=4096, workers=0, device="cpu")
        trainer = Trainer(config, DistContext(0, 1, 0, device), backbone=backbone, progress=False)
        real = trainer.dataset[(0, 0)][None].repeat(2, 1, 1, 1, 1)
        trainer.iteration(real)  # warm-up
        start, done = time.perf_counter(), 0
        while done < args.iterations and time.perf_counter() - start < args.limit / 2:
            trainer.iteration(real)
            done += 1
        seconds = time.perf_counter() - start
    print(json.dumps({"it_s": done / seconds, "iterations": done, **described}))


def measure(setting: str, args, *, competitors: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in _CLEARED}
    env.update(SETTINGS[setting][0])
    spin = f"import time\nend = time.monotonic() + {args.limit}\nwhile time.monotonic() < end:\n    pass"
    rivals = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(competitors)]
    try:
        if rivals:
            time.sleep(args.lead)
        load = os.getloadavg()[0]
        done = subprocess.run([sys.executable, __file__, "--child", setting, "--iterations", str(args.iterations),
                               "--frames", str(args.frames), "--limit", str(args.limit)],
                              env=env, capture_output=True, text=True, timeout=args.limit, check=False)
    finally:
        for rival in rivals:
            rival.kill()
            rival.wait()
    if done.returncode != 0:
        raise SystemExit(f"{setting}: the measurement failed:\n{done.stderr[-3000:]}")
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "load": load}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=4)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--competitors", type=int, default=1)
    parser.add_argument("--lead", type=float, default=20.0, help="seconds the competitors run before timing")
    parser.add_argument("--limit", type=float, default=300.0, help="seconds any one process may run")
    parser.add_argument("--settings", default=",".join(SETTINGS))
    parser.add_argument("--rounds", type=int, default=1, help="repeat every measurement, in turns")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.setting = args.child
        child(args)
        return
    settings = [s.strip() for s in args.settings.split(",")]
    unknown = [s for s in settings if s not in SETTINGS]
    if unknown:
        raise SystemExit(f"unknown settings {unknown}; known: {', '.join(SETTINGS)}")
    from mocohd_cli.infra.threads import usable_cores

    print(f"{usable_cores()} usable cores (os.cpu_count {os.cpu_count()}); load average at start "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; {args.iterations} iterations per measurement, "
          f"{args.frames}-frame clips, {args.competitors} competing busy process(es), {args.rounds} round(s)")
    results: dict[tuple[str, int], list[dict]] = {}
    for _ in range(args.rounds):
        for competitors in (0, args.competitors):
            for setting in settings:
                result = measure(setting, args, competitors=competitors)
                results.setdefault((setting, competitors), []).append(result)
                print(f"  {setting}, {competitors} competing: {result['it_s']:.3f} it/s with {result['threads']} "
                      f"thread(s), load {result['load']:.2f}", file=sys.stderr, flush=True)
    rows = [("setting", "threads", "wait policy", "alone it/s", "load", f"beside {args.competitors} it/s", "load",
             "beside / alone")]
    for setting in settings:
        alone, beside = results[(setting, 0)], results[(setting, args.competitors)]
        a = sum(r["it_s"] for r in alone) / len(alone)
        b = sum(r["it_s"] for r in beside) / len(beside)
        rows.append((setting, f"{alone[0]['threads']} / {beside[0]['threads']}",
                     str(alone[0]["wait_policy"] or "unset (spin)"), f"{a:.3f}",
                     " ".join(f"{r['load']:.2f}" for r in alone), f"{b:.3f}",
                     " ".join(f"{r['load']:.2f}" for r in beside), f"{b / a:.2f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for index, row in enumerate(rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)))
        if index == 0:
            print("  ".join("-" * width for width in widths))
    print("threads: alone / beside (the mocohd default reads the load average when it starts); "
          f"load: the 1-minute load average as each measurement started; end load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
