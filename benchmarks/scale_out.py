"""Scale-out of `mocohd sample` and `mocohd eval` over torchrun ranks (issue 37): the same command
with 1 process and with 2 (gloo, one thread each), timed as whole processes in one run, as a ratio.

Rows:
  sample    `mocohd sample --example faces -n N --frames 16` (64 px, mp4): videos per second
  eval      `mocohd eval --real A --fake B --metric fvd16 --metric fid` on two folders of N sampled
            videos: videos per second (each video is decoded and read twice: real and fake side)

The eval rows use stand-in detectors (small TorchScript 3D / 2D conv nets with the I3D and
Inception call signatures, written to a temporary folder): this machine has no network to fetch
the real ones. The real I3D costs far more per clip, which only makes the split pay more.
Both runs also check that 1 and 2 processes wrote the same files and the same numbers.
  reading   clips of 16 frames at 64 px per second (one process, one thread, batches of 8) from the N
            sampled mp4 videos as a folder (`VideoClips` + `clip_loader`, the index built before timing)
            and as tar shards of 32 videos (`mocohd data shard`, streamed by `ShardClips`)

    OMP_NUM_THREADS=1 python benchmarks/scale_out.py [--videos 192] [--repeats 1]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn


class StandInI3D(nn.Module):
    """uint8 [B, 3, T, H, W] -> [B, 400] features, I3D's call signature."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv3d(3, 16, 3, stride=(1, 2, 2), padding=1), nn.ReLU(),
                                 nn.Conv3d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
                                 nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(32, 400))

    def forward(self, x: Tensor, rescale: bool = False, resize: bool = False, return_features: bool = False) -> Tensor:
        return self.net(x.float() / 127.5 - 1)


class StandInInception(nn.Module):
    """uint8 [B, 3, H, W] -> [B, 64] features, Inception's call signature."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.net = nn.Sequential(nn.Conv2d(3, 32, 3, stride=2, padding=1), nn.ReLU(),
                                 nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def forward(self, x: Tensor, return_features: bool = False) -> Tensor:
        return self.net(x.float() / 127.5 - 1)


def mocohd(processes: int, args: list[str], cwd: Path) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system, every process) of one whole `mocohd ...` process (1)
    or torchrun job (2 or more)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MOCOHD_THREADS": "1", "CI": "1"}
    launcher = ([sys.executable, "-m", "mocohd_cli"] if processes == 1 else
                [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
                 "--monitor-interval", "0.1", "-m", "mocohd_cli"])
    before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    done = subprocess.run([*launcher, *args], env=env, cwd=cwd, capture_output=True, text=True)
    seconds, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"mocohd {' '.join(args[:1])} with {processes} process(es) failed:\n{done.stderr[-3000:]}")
    return seconds, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def clips_per_second(data, clips: int) -> float:
    """Training clips read per second: 16 frames at 64 px, batches of 8, from a folder or shards."""
    from mocohd_cli.data.clips import VideoClips, clip_loader

    dataset = VideoClips(data, n_frames=16, time_step=1, size=64, seed=0)  # a folder: indexed here, untimed
    batches, read, start = clip_loader(dataset, 8, seed=0), 0, time.perf_counter()
    for batch in batches:
        read += len(batch)
        if read >= clips:
            break
    return read / (time.perf_counter() - start)


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=192)
    parser.add_argument("--repeats", type=int, default=1, help="runs of each command; the fastest counts")
    args = parser.parse_args()
    n, load = args.videos, os.getloadavg()
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        detectors = []
        warnings.filterwarnings("ignore", category=FutureWarning)  # torch.jit's deprecation notes
        for name, module in (("i3d", StandInI3D()), ("inception", StandInInception())):
            torch.jit.save(torch.jit.script(module), str(tmp / f"{name}.pt"))
            detectors += ["--detector", f"{name}={tmp / f'{name}.pt'}"]
        rows = []
        sample = ["sample", "--example", "faces", "-n", str(n), "--frames", "16", "--seed", "3", "--threads", "1"]
        times = {p: min(mocohd(p, [*sample, "--out", str(tmp / f"s{p}")], tmp) for _ in range(args.repeats))
                 for p in (1, 2)}
        same = tree(tmp / "s1") == tree(tmp / "s2")
        rows.append(("sample", n, times, same))
        mocohd(1, [*sample, "--seed", "4", "--out", str(tmp / "real")], tmp)
        evaluate = ["eval", "--real", str(tmp / "real"), "--fake", str(tmp / "s1"), "--metric", "fvd16", "--metric",
                    "fid", "--num-videos", str(n), "--no-cache", *detectors, "--threads", "1"]
        times = {p: min(mocohd(p, [*evaluate, "--json", str(tmp / f"e{p}.json")], tmp) for _ in range(args.repeats))
                 for p in (1, 2)}
        one, two = (json.loads((tmp / f"e{p}.json").read_text()) for p in (1, 2))
        same = all(abs(one[m] - two[m]) <= 1e-6 * max(1.0, abs(one[m])) for m in ("fvd16", "fid"))
        rows.append(("eval (fvd16 + fid, stand-in detectors)", n, times, same))
        from mocohd_cli.data.shards import write_shards

        torch.set_num_threads(1)
        shards, _ = write_shards(tmp / "s1", tmp / "shards", per_shard=32)
        spec = str(tmp / "shards" / f"shard-{{000000..{len(shards) - 1:06d}}}.tar")
        reading = {"folder": clips_per_second(tmp / "s1", n), "shards": clips_per_second(spec, n)}

    print(f"{n} videos of 16 frames at 64 px (the faces example), one thread per process, gloo; whole "
          f"processes, fastest of {args.repeats}\n")
    print(f"load average before: {load[0]:.2f} on {os.cpu_count()} cores (other jobs take that share of the CPU)\n")
    print("| command | videos | 1 process: s (CPU s) | 2 processes: s (CPU s) | videos/s, 1 | videos/s, 2 | "
          "speed-up | same output |")
    print("|---|---|---|---|---|---|---|---|")
    for name, videos, t, same in rows:
        (wall1, cpu1), (wall2, cpu2) = t[1], t[2]
        print(f"| {name} | {videos} | {wall1:.1f} ({cpu1:.1f}) | {wall2:.1f} ({cpu2:.1f}) | {videos / wall1:.2f} | "
              f"{videos / wall2:.2f} | {wall1 / wall2:.2f}x | {'yes' if same else 'NO'} |")
    print(f"\nreading {n} training clips (16 frames, 64 px, batches of 8, one process, one thread):\n")
    print("| source | clips/s |")
    print("|---|---|")
    print(f"| folder of {n} mp4 files | {reading['folder']:.1f} |")
    print(f"| {len(shards)} tar shards of 32 mp4 files | {reading['shards']:.1f} |")
    print(f"\nshards / folder: {reading['shards'] / reading['folder']:.2f}x")


if __name__ == "__main__":
    main()
