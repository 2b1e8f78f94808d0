"""What a value of the `frames` metric (the reader FID) means: real frames, degraded in known ways,
against other real frames.

Two disjoint sets of real videos of a procedural domain are rendered; the first is read once, the
second is read plainly (the real-versus-real floor) and after each degradation (Gaussian blur,
down-sampling and back, pixel noise). A generated set whose reader FID matches a row is, to the
reader, about as far from the data as that degradation.

    python benchmarks/frames_fd_scale.py                      # faces, 256 videos of 16 frames a side
    python benchmarks/frames_fd_scale.py --domain robots --videos 128

Prints a Markdown table: one row per degradation.
"""
from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F


def blur(videos: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of uint8 videos [N, T, 3, H, W] (edges replicated)."""
    radius = int(round(3 * sigma))
    taps = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-taps ** 2 / (2 * sigma ** 2))
    kernel = kernel / kernel.sum()
    x = F.pad(videos.flatten(0, 1).float(), (radius,) * 4, mode="replicate")
    x = F.conv2d(x, kernel.view(1, 1, 1, -1).expand(3, 1, 1, -1), groups=3)
    x = F.conv2d(x, kernel.view(1, 1, -1, 1).expand(3, 1, -1, 1), groups=3)
    return x.round().clamp(0, 255).to(torch.uint8).view_as(videos)


def resample(videos: torch.Tensor, side: int) -> torch.Tensor:
    """Down to `side` pixels (antialiased) and back up (bilinear)."""
    x = videos.flatten(0, 1).float()
    size = x.shape[-1]
    x = F.interpolate(x, size=side, mode="bilinear", antialias=True, align_corners=False)
    x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8).view_as(videos)


def noisy(videos: torch.Tensor, std: float, seed: int = 0) -> torch.Tensor:
    """Gaussian pixel noise of `std` (in 0-255 units)."""
    noise = torch.randn(videos.shape, generator=torch.Generator().manual_seed(seed)) * std
    return (videos.float() + noise).round().clamp(0, 255).to(torch.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--domain", default="faces")
    parser.add_argument("--videos", type=int, default=256, help="videos a side")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()

    from mocohd_cli.evaluation import groundtruth as gt
    from mocohd_cli.evaluation.readers import load_reader

    reader = load_reader(args.domain, args.size)
    reference = gt.read_videos(reader, gt.render_real(args.domain, args.videos, args.frames, args.size, 1_000_000))
    other = gt.render_real(args.domain, args.videos, args.frames, args.size, 2_000_000)
    half = args.size // 2
    rows = [("none (real versus real: the floor)", other)]
    rows += [(f"Gaussian blur, sigma {s:g} px", blur(other, s)) for s in (0.5, 1.0, 1.5, 2.0)]
    rows += [(f"down to {half} px and back", resample(other, half))]
    rows += [(f"pixel noise, std {s:g} / 255", noisy(other, s)) for s in (8, 16)]
    print(f"{args.domain}: {args.videos} real videos of {args.frames} frames a side, {args.size} px\n")
    print("| second set | reader FID |\n| --- | --- |")
    for name, videos in rows:
        print(f"| {name} | {gt.frames_metrics(reader, reference, videos)['fid']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
