"""Writing videos: mp4 (H.264 through imageio-ffmpeg), gif, or PNG frames; grids of videos and of images."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..infra.errors import MocohdError
from ..infra.files import atomic_path

FORMATS = ("mp4", "gif", "png")


def quantize(frames: Tensor) -> Tensor:
    """Frames in [-1, 1] (any shape) -> uint8 on the CPU, rounded: how every video file mocohd writes
    (and every generated frame it evaluates) becomes 8-bit."""
    return ((frames.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def to_uint8(frames: Tensor) -> np.ndarray:
    """[T, 3, H, W] in [-1, 1] -> [T, H, W, 3] uint8."""
    return quantize(frames).permute(0, 2, 3, 1).contiguous().numpy()


def video_grid(videos: Tensor, nrow: int | None = None, padding: int = 2) -> Tensor:
    """Tile videos [N, T, 3, H, W] into one video [T, 3, H', W'] (padding in black, -1)."""
    n, t, c, h, w = videos.shape
    nrow = nrow or math.ceil(math.sqrt(n))
    ncol = math.ceil(n / nrow)
    grid = videos.new_full((t, c, ncol * (h + padding) + padding, nrow * (w + padding) + padding), -1.0)
    for index in range(n):  # a handful of tiles: a loop over tiles is clearest
        row, col = divmod(index, nrow)
        top, left = padding + row * (h + padding), padding + col * (w + padding)
        grid[:, :, top:top + h, left:left + w] = videos[index]
    return grid


def image_grid(images: Tensor, nrow: int | None = None, padding: int = 2) -> Tensor:
    """Tile images [N, 3, H, W] into one image [3, H', W'], laid out as `video_grid` lays out videos."""
    return video_grid(images[:, None], nrow=nrow, padding=padding)[0]


def save_image(image: Tensor, path: str | Path, *, scale: int = 1) -> Path:
    """Write one image [3, H, W] in [-1, 1] as a PNG, enlarged `scale` times (nearest neighbour)."""
    import imageio.v3 as iio

    if scale > 1:
        image = image.repeat_interleave(scale, dim=-2).repeat_interleave(scale, dim=-1)
    with atomic_path(path) as tmp:
        iio.imwrite(tmp, to_uint8(image[None])[0], extension=".png")
    return Path(path)


def _pad_to_even(frames: np.ndarray) -> np.ndarray:
    """H.264 in yuv420p needs even sides; pad by edge replication."""
    _, h, w, _ = frames.shape
    return np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")


def save_video(frames: Tensor, path: str | Path, fps: float = 8) -> Path:
    """Write one video [T, 3, H, W] in [-1, 1]; the format follows the suffix (.mp4, .gif, or a folder for PNG)."""
    import imageio.v3 as iio

    path = Path(path)
    pixels = to_uint8(frames)
    suffix = path.suffix.lower().lstrip(".")
    if suffix == "mp4":
        with atomic_path(path) as tmp:
            # bitexact flags keep the same frames -> the same bytes (no encoder version string).
            iio.imwrite(tmp, _pad_to_even(pixels), extension=".mp4", plugin="FFMPEG", fps=fps, codec="libx264",
                        macro_block_size=1, pixelformat="yuv420p", quality=None,
                        output_params=["-crf", "18", "-fflags", "+bitexact", "-flags:v", "+bitexact",
                                       "-map_metadata", "-1"])
    elif suffix == "gif":
        with atomic_path(path) as tmp:
            iio.imwrite(tmp, pixels, extension=".gif", plugin="pillow", duration=1000 / fps, loop=0)
    elif suffix in ("", "png"):
        folder = path.with_suffix("") if suffix else path
        folder.mkdir(parents=True, exist_ok=True)
        for t, frame in enumerate(pixels):
            with atomic_path(folder / f"frame_{t:04d}.png") as tmp:
                iio.imwrite(tmp, frame, extension=".png")
        return folder
    else:
        raise MocohdError(f"unknown video format {suffix!r}", path=path, fix=f"use one of {', '.join(FORMATS)}")
    return path


def write_videos(videos: Tensor, out_dir: str | Path, *, fps: float = 8, fmt: str = "mp4", grid: bool = False,
                 prefix: str = "video") -> list[Path]:
    """Write videos [N, T, 3, H, W] to `out_dir`: one file each, or one grid when `grid`."""
    if fmt not in FORMATS:
        raise MocohdError(f"unknown video format {fmt!r}", fix=f"use one of {', '.join(FORMATS)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    suffix = "" if fmt == "png" else f".{fmt}"
    if grid:
        return [save_video(video_grid(videos), out_dir / f"{prefix}_grid{suffix}", fps)]
    return [save_video(video, out_dir / f"{prefix}_{i:04d}{suffix}", fps) for i, video in enumerate(videos)]
