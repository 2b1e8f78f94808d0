"""Memory of streaming tar shards as the number of videos grows (issue 37: bounded with 100,000+ videos).

Writes two shard sets of tiny frame-sequence videos (2 PNG frames of 8x8 px each, 1,000 per shard, with
the webdataset library's ShardWriter): a reference of --small videos and one of --large videos. For each,
a fresh process reads every video once as training does (`ShardClips`, one epoch of clips), lists the first
videos as the latent phase does (`LeadingVideos`) and reads the eval source (`ShardVideos`), and reports its
peak resident memory above what it held after the imports. The table compares the two sets in one run: a
reader whose memory grew with the videos would show the large set's peak far above the small one's.

    OMP_NUM_THREADS=1 python benchmarks/shard_memory.py [--small 1000] [--large 100000]
"""
from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PER_SHARD = 1000

CHILD = r"""
import json, resource, sys, time
from mocohd_cli.data.shards import ShardClips
from mocohd_cli.data.leading import LeadingVideos
from mocohd_cli.evaluation.sources import ShardVideos

spec, videos = sys.argv[1], int(sys.argv[2])
rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
base = rss()
start = time.perf_counter()
stream = iter(ShardClips(spec, n_frames=2, time_step=1, size=8, seed=0))
for _ in range(videos):
    next(stream)
train_s = time.perf_counter() - start
listed = len(LeadingVideos(spec, 64, 2, 1, 8).listed)
source = ShardVideos(spec, size=8, max_videos=videos)
clips = sum(batch.shape[0] for batch in source.clips(2, 256))
print(json.dumps({"base_mb": base, "peak_mb": rss(), "train_s": train_s, "listed": listed, "eval_clips": clips}))
"""


def write_set(root: Path, videos: int) -> str:
    import numpy as np
    import webdataset
    from PIL import Image

    root.mkdir(parents=True)
    frames = []
    for seed in (0, 1):
        pixels = np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG")
        frames.append(buffer.getvalue())
    with webdataset.ShardWriter(str(root / "shard-%06d.tar"), maxcount=PER_SHARD, verbose=0) as sink:
        for i in range(videos):
            sink.write({"__key__": f"video_{i:07d}", "000000.png": frames[0], "000001.png": frames[1]})
    shards = (videos + PER_SHARD - 1) // PER_SHARD
    return str(root / f"shard-{{000000..{shards - 1:06d}}}.tar")


def measure(spec: str, videos: int) -> dict:
    result = subprocess.run([sys.executable, "-c", CHILD, spec, str(videos)], capture_output=True, text=True,
                            check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=1000, help="videos of the reference set")
    parser.add_argument("--large", type=int, default=100_000, help="videos of the measured set")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for videos in (args.small, args.large):
            start = time.perf_counter()
            spec = write_set(Path(tmp) / str(videos), videos)
            written = time.perf_counter() - start
            rows.append((videos, written, measure(spec, videos)))
    print(f"| videos | shards | write s | epoch s | clips/s | eval clips | peak MB | above imports MB |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for videos, written, m in rows:
        print(f"| {videos:,} | {(videos + PER_SHARD - 1) // PER_SHARD} | {written:.1f} | {m['train_s']:.1f} | "
              f"{videos / m['train_s']:,.0f} | {m['eval_clips']:,} | {m['peak_mb']:.0f} | "
              f"{m['peak_mb'] - m['base_mb']:.0f} |")
    (small, _, a), (large, _, b) = rows
    print(f"\n{large:,} videos against {small:,}: peak memory above the imports "
          f"{b['peak_mb'] - b['base_mb']:.0f} MB against {a['peak_mb'] - a['base_mb']:.0f} MB")


if __name__ == "__main__":
    main()
