"""Real-clip reading speed and dataset indexing time, against the reader mocohd used before,
measured in the same run.

Clips per second (one clip = --frames frames every --time-step, centre-cropped and resized to
--size, exactly as VideoClips.load makes it) from
- frame folders (PNG),
- mp4 files (--video-frames frames of --side px, H.264 as imageio writes it): clips at random
  starts and clips near the end of the videos,
- a zip of the same mp4 files (stored, as mp4 files usually are),
against the reference reader kept in this script: imageio-ffmpeg (an ffmpeg process per clip,
decoding from frame 0; a zip member copied to a temporary file first) and the bilinear resize
that mocohd used before. Every mp4 clip's frames are compared with the reference's, pixel for
pixel; mocohd resizes with Lanczos (PIL), the reference bilinearly (torch), so the decoding
alone is also timed. Then the time to index --index-files small mp4 files (first run, and again from the
index cache), extrapolated to UCF-101's 13,320 files, against counting frames with imageio
(timed on a sample of the files); and clips per second through clip_loader with each of
--workers worker processes, reading alone and beside a simulated GPU training step.

Files are written to a temporary folder first, so reads come from the page cache. Clips are
timed with one torch thread (--threads), as DataLoader workers run.

Usage: python benchmarks/data_speed.py [--video-frames 600] [--side 128] [--frames 16] [--time-step 1]
       [--size 64] [--clips 30] [--index-files 2000] [--workers 0,1,2,3,4] [--batch 8] [--threads 1]
       [--step-ms 80]
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import tempfile
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

UCF101_FILES = 13_320


# -- the reference: mocohd's reader before PyAV ---------------------------------------------------
def reference_frames(path: Path, indices: list[int]) -> list[np.ndarray]:
    """The frames at `indices` of a video file, read as before: an ffmpeg process decoding from frame 0."""
    import imageio.v2 as imageio

    wanted, frames = set(indices), {}
    with imageio.get_reader(str(path), format="FFMPEG") as reader:
        for index, frame in enumerate(reader):
            if index in wanted:
                frames[index] = np.asarray(frame)[..., :3]
            if index >= indices[-1]:
                break
    return [frames[i] for i in indices]


def reference_zip_frames(archive: zipfile.ZipFile, name: str, indices: list[int]) -> list[np.ndarray]:
    """As before for a zip member: copied to a temporary file, then read as above."""
    handle, tmp = tempfile.mkstemp(suffix=Path(name).suffix)
    with os.fdopen(handle, "wb") as out:
        out.write(archive.read(name))
    try:
        return reference_frames(Path(tmp), indices)
    finally:
        os.unlink(tmp)


def reference_count(path: Path) -> int:
    import imageio.v2 as imageio

    with imageio.get_reader(str(path), format="FFMPEG") as reader:
        return reader.count_frames()


def reference_to_clip(frames: np.ndarray, size: int) -> torch.Tensor:
    """The previous frames_to_clip: centre crop, bilinear resize with antialiasing."""
    clip = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    h, w = clip.shape[-2:]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    clip = clip[:, :, top:top + side, left:left + side]
    if side != size:
        clip = F.interpolate(clip, size=(size, size), mode="bilinear", align_corners=False, antialias=side > size)
    return (clip / 127.5 - 1.0).clamp(-1, 1)


# -- test data ------------------------------------------------------------------------------------------
def synthetic_video(n: int, side: int, seed: int) -> np.ndarray:
    """Moving gradients with a little noise: compresses like ordinary footage, every frame differs."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:side, 0:side]
    video = np.empty((n, side, side, 3), np.uint8)
    for t in range(n):
        video[t, ..., 0] = (xx * 2 + t * 3 + seed * 40) % 256
        video[t, ..., 1] = (yy * 2 + t) % 256
        video[t, ..., 2] = (xx + yy + t * 5) % 256
    noise = rng.integers(-8, 9, video.shape)
    return (video.astype(int) + noise).clip(0, 255).astype(np.uint8)


def write_mp4(path: Path, frames: np.ndarray) -> None:
    import imageio

    imageio.mimwrite(path, frames, fps=25, macro_block_size=8)


def make_data(root: Path, args) -> dict[str, Path]:
    videos, folders = root / "mp4", root / "frames"
    videos.mkdir()
    for v in range(args.videos):
        frames = synthetic_video(args.video_frames, args.side, v)
        write_mp4(videos / f"video{v}.mp4", frames)
        if v < 2:  # frame folders: how fast they read does not depend on their length
            (folders / f"video{v}").mkdir(parents=True)
            for t, frame in enumerate(frames[:200]):
                Image.fromarray(frame).save(folders / f"video{v}" / f"img_{t:04d}.png")
    archive = root / "mp4.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as zf:
        for file in sorted(videos.iterdir()):
            zf.write(file, f"mp4/{file.name}")
    return {"frames": folders, "mp4": videos, "zip": archive}


def make_index_data(root: Path, n_files: int) -> Path:
    """n_files small mp4 files (48 frames, 64 px; 20 distinct ones copied) in 100-file class folders."""
    distinct = root / "distinct"
    distinct.mkdir()
    for v in range(20):
        write_mp4(distinct / f"v{v}.mp4", synthetic_video(48, 64, 100 + v))
    data = root / "many"
    for i in range(n_files):
        folder = data / f"class{i // 100:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(distinct / f"v{i % 20}.mp4", folder / f"clip{i:05d}.mp4")
    return data


# -- measurements ----------------------------------------------------------------------------------------
def clip_indices(start: int, args) -> list[int]:
    return list(range(start, start + (args.frames - 1) * args.time_step + 1, args.time_step))


def time_clips(dataset, starts: list[tuple[int, int]], args, reference) -> dict:
    """Clips/s of mocohd and of the reference over the same (video, start) pairs, in all and for
    decoding alone, and whether the decoded frames are identical."""
    from mocohd_cli.data.clips import decode_image, decode_video_frames, frames_to_clip

    def new_frames(i: int, start: int) -> np.ndarray:
        entry, indices = dataset.entries[i], clip_indices(start, args)
        if entry.file is not None:
            return np.stack(decode_video_frames(dataset.storage, entry.file, indices, info=entry.info))
        return np.stack([decode_image(dataset.storage, entry.frames[k]) for k in indices])

    def old_frames(i: int, start: int) -> np.ndarray:
        return np.stack(reference(dataset.entries[i], clip_indices(start, args)))

    readers = {"new": (new_frames, frames_to_clip), "old": (old_frames, reference_to_clip)}
    decoding = {name: 0.0 for name in readers}
    resizing = {name: 0.0 for name in readers}
    decoded: dict[str, list] = {name: [] for name in readers}
    for name, (read, to_clip) in readers.items():
        to_clip(read(*starts[0]), args.size)  # warm-up
    for i, start in starts:  # the two readers take turns, so both meet the same load from other jobs
        for name, (read, to_clip) in readers.items():
            began = time.perf_counter()
            frames = read(i, start)
            middle = time.perf_counter()
            to_clip(frames, args.size)
            decoding[name] += middle - began
            resizing[name] += time.perf_counter() - middle
            decoded[name].append(frames)
    result = {}
    for name in readers:
        result[name] = len(starts) / (decoding[name] + resizing[name])
        result[f"{name}_decoding"] = len(starts) / decoding[name]
    result["same"] = all(np.array_equal(a, b) for a, b in zip(decoded["new"], decoded["old"]))
    return result


def clip_rows(paths: dict[str, Path], args) -> list[tuple]:
    from mocohd_cli.data.clips import VideoClips, decode_image, clip_span

    span = clip_span(args.frames, args.time_step)
    rng = random.Random(0)
    rows = []
    archive = zipfile.ZipFile(paths["zip"])
    for kind in ("frames", "mp4", "zip"):
        dataset = VideoClips(paths[kind], n_frames=args.frames, time_step=args.time_step, size=args.size)
        if kind == "frames":
            def reference(entry, indices):
                return [decode_image(dataset.storage, entry.frames[k]) for k in indices]
        elif kind == "mp4":
            def reference(entry, indices):
                return reference_frames(dataset.root / entry.file, indices)
        else:
            def reference(entry, indices):
                return reference_zip_frames(archive, entry.file, indices)
        spans = {"random starts": lambda e: rng.randrange(e.length - span + 1)}
        if kind != "frames":
            spans["near the end"] = lambda e: e.length - span - rng.randrange(max(1, e.length // 20))
        for label, pick in spans.items():
            starts = [(i, pick(dataset.entries[i])) for i in (rng.randrange(len(dataset)) for _ in range(args.clips))]
            rows.append((f"{kind}, {label}", time_clips(dataset, starts, args, reference)))
    return rows


def index_rows(data: Path, args) -> dict:
    from mocohd_cli.data.index import scan
    from mocohd_cli.data.storage import open_storage

    began = time.perf_counter()
    first = scan(open_storage(data), show_progress=False)
    cold = time.perf_counter() - began
    began = time.perf_counter()
    again = scan(open_storage(data), show_progress=False)
    warm = time.perf_counter() - began
    assert first.read == args.index_files and again.read == 0 and len(first.usable) == args.index_files
    sample = sorted(data.rglob("*.mp4"))[:: max(1, args.index_files // args.reference_files)][: args.reference_files]
    began = time.perf_counter()
    counts = [reference_count(p) for p in sample]
    per_file = (time.perf_counter() - began) / len(sample)
    mine = {r.name: r.frames for r in first.records}
    assert all(mine[p.relative_to(data).as_posix()] == c for p, c in zip(sample, counts)), "frame counts differ"
    return {"cold": cold, "warm": warm, "reference_per_file": per_file, "files": args.index_files}


def loader_rows(path: Path, args) -> list[tuple[int, float, float]]:
    """clips/s through clip_loader for each --workers value: reading alone, and with a training
    step that keeps the main process waiting --step-ms per batch (as a GPU step does)."""
    from mocohd_cli.data.clips import VideoClips, clip_loader

    dataset = VideoClips(path, n_frames=args.frames, time_step=args.time_step, size=args.size)
    rows = []
    for workers in args.workers:
        rates = []
        for step in (0.0, args.step_ms / 1000):
            batches = clip_loader(dataset, args.batch, seed=0, workers=workers,
                                  pin_memory=torch.cuda.is_available())
            for _ in range(2 + workers):  # start-up and the first prefetched batches
                next(batches)
            began = time.perf_counter()
            for _ in range(args.batches):
                next(batches)
                time.sleep(step)
            rates.append(args.batches * args.batch / (time.perf_counter() - began))
            del batches
        rows.append((workers, *rates))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--video-frames", type=int, default=600)
    parser.add_argument("--side", type=int, default=128)
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--time-step", type=int, default=1)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--clips", type=int, default=30, help="clips timed per row")
    parser.add_argument("--index-files", type=int, default=2000)
    parser.add_argument("--reference-files", type=int, default=40, help="files the imageio count is timed on")
    parser.add_argument("--workers", type=lambda s: [int(w) for w in s.split(",")], default=[0, 1, 2, 3, 4])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--batches", type=int, default=12, help="batches timed per --workers value")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of this process")
    parser.add_argument("--step-ms", type=float, default=80.0, help="simulated training step per batch")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message="This DataLoader will create")  # more workers than CPUs

    with tempfile.TemporaryDirectory(prefix="mocohd-data-speed-") as tmp:
        root = Path(tmp)
        os.environ["MOCOHD_CACHE"] = str(root / "cache")  # a fresh index cache
        print(f"writing test data ({args.videos} mp4 x {args.video_frames} frames of {args.side} px, "
              f"{args.index_files} small mp4 files) to {root} ...", flush=True)
        paths = make_data(root, args)
        index_data = make_index_data(root, args.index_files)
        print(f"torch threads {torch.get_num_threads()}, {os.cpu_count()} CPUs, load average "
              f"{os.getloadavg()[0]:.1f}\n", flush=True)

        rows = clip_rows(paths, args)
        print(f"clips of {args.frames} frames every {args.time_step}, resized to {args.size} px "
              f"({args.clips} clips per row)\n")
        print("| source | mocohd clips/s | imageio reference clips/s | speed-up | decoding alone: mocohd / "
              "reference clips/s | same frames |")
        print("| --- | --- | --- | --- | --- | --- |")
        for label, r in rows:
            print(f"| {label} | {r['new']:.1f} | {r['old']:.1f} | {r['new'] / r['old']:.1f}x | "
                  f"{r['new_decoding']:.1f} / {r['old_decoding']:.1f} = "
                  f"{r['new_decoding'] / r['old_decoding']:.1f}x | {'yes' if r['same'] else 'NO'} |")

        index = index_rows(index_data, args)
        n, scale = index["files"], UCF101_FILES / index["files"]
        print(f"\nindexing {n} mp4 files of 48 frames, 64 px\n")
        print("| | seconds | ms per file | extrapolated to 13,320 files |")
        print("| --- | --- | --- | --- |")
        print(f"| first run | {index['cold']:.2f} | {1000 * index['cold'] / n:.2f} | {index['cold'] * scale:.1f} s |")
        print(f"| from the cache | {index['warm']:.3f} | {1000 * index['warm'] / n:.3f} | "
              f"{index['warm'] * scale:.2f} s |")
        ref = index["reference_per_file"]
        print(f"| imageio count_frames (timed on {args.reference_files} files) | {ref * n:.1f} (est.) | "
              f"{1000 * ref:.1f} | {ref * UCF101_FILES / 60:.1f} min |")

        print(f"\nclip_loader from the mp4 folder, batches of {args.batch} random clips; clips/s reading "
              f"alone, and with a {args.step_ms:g} ms step per batch that leaves the CPU free (a GPU step)\n")
        print(f"| --workers | clips/s, reading alone | clips/s, with the step (at most {1000 * args.batch / args.step_ms:.0f}) |")
        print("| --- | --- | --- |")
        for workers, alone, stepped in loader_rows(paths["mp4"], args):
            print(f"| {workers} | {alone:.1f} | {stepped:.1f} |", flush=True)


if __name__ == "__main__":
    main()
