"""Speed of evaluation: feature extraction in videos per second and the ground-truth metrics end
to end, on 16-frame 64 px videos of the faces domain (CPU by default).

Rows:
  render           rendering the real videos the ground-truth metrics compare with
  reader, batched  the factor reader on 256 frames per call (what `mocohd eval` does)
  reader, 1 video  the same network called once per video (the reference, in the same run)
  metrics          motion + content + frames on already-read videos
  end to end       `run_evaluation` with all three metrics on a folder of videos (as the command)
  i3d              with --i3d PATH: I3D features of 16-frame clips (FVD's network)

    python benchmarks/eval_speed.py [--videos 256] [--threads N] [--i3d i3d_torchscript.pt]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=256)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--i3d", type=Path, default=None, help="an i3d_torchscript.pt to time as well")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from mocohd_cli.data.domains import make_dataset
    from mocohd_cli.evaluation.groundtruth import (content_metrics, frames_metrics, motion_metrics, read_videos,
                                                   render_real)
    from mocohd_cli.evaluation.readers import load_reader
    from mocohd_cli.evaluation.run import EvalSettings, run_evaluation

    n, t = args.videos, args.frames
    reader = load_reader("faces")
    rows = []
    real, seconds = timed(lambda: render_real("faces", n, t, 64, seed=1_000_000))
    rows.append(("render", n / seconds, seconds))
    fake = render_real("faces", n, t, 64, seed=7)
    read, seconds = timed(lambda: read_videos(reader, fake))
    rows.append(("reader, batched", n / seconds, seconds))
    subset = max(8, n // 8)  # the slow reference on a subset, reported per video
    _, seconds = timed(lambda: [read_videos(reader, fake[i:i + 1]) for i in range(subset)])
    rows.append(("reader, 1 video (reference)", subset / seconds, seconds * n / subset))
    real_read = read_videos(reader, real)
    _, seconds = timed(lambda: (motion_metrics(reader, real_read, read), content_metrics(reader, real_read, read),
                                frames_metrics(reader, real_read, read)))
    rows.append(("metrics on read videos", n / seconds, seconds))
    with tempfile.TemporaryDirectory() as folder:
        data = make_dataset("faces", Path(folder) / "fake", videos=n, frames=t, size=64, seed=11)
        settings = EvalSettings(metrics=["motion", "content", "frames"], real=str(data), fake=str(data),
                                num_videos=n, frames=t, device="cpu")
        _, seconds = timed(lambda: run_evaluation(settings))
    rows.append(("end to end (3 metrics)", n / seconds, seconds))
    if args.i3d:
        from mocohd_cli.evaluation.detectors import Detector

        detector = Detector("i3d", args.i3d, "-", torch.device("cpu"))
        clips = fake[:32]
        _, seconds = timed(lambda: [detector(clips[i:i + 8]) for i in range(0, len(clips), 8)])
        rows.append(("i3d features, 16-frame 64 px clips", len(clips) / seconds, seconds * n / len(clips)))

    print(f"{n} videos of {t} frames at 64 px, {torch.get_num_threads()} threads")
    print(f"{'step':<36} {'videos/s':>10} {'seconds for all':>16}")
    for name, rate, seconds in rows:
        print(f"{name:<36} {rate:>10.1f} {seconds:>16.1f}")


if __name__ == "__main__":
    main()
