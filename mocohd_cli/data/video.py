"""Writing videos: mp4 (H.264 through imageio-ffmpeg), gif, or PNG frames; grids of videos and of images.

Every file is written atomically (a temporary file renamed into place), so an error or a crash
leaves the previous file of that name as it was, and every error while writing is one
MocohdError naming the file."""
from __future__ import annotations

import math
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import Tensor

from ..infra.errors import MocohdError
from ..infra.files import atomic_path, write_error

FORMATS = ("mp4", "gif", "png")
# Frame rates outside this range are typos rather than videos, and at the extremes ffmpeg writes
# an mp4 with no frames in it (a timestamp overflow it only logs) or the GIF delay overflows.
FPS_RANGE = (0.01, 1000.0)
# GIF delays are whole hundredths of a second, and browsers play delays under 2/100 s at 10 fps.
GIF_MAX_FPS = 50.0


def check_fps(fps, fmt: str | None = None) -> float:
    """`fps` as a float if the writers can honour it (for `fmt`, or every format), else one clear
    error. The one check of a frame rate: settings validate with it and every writer calls it."""
    low, high = FPS_RANGE
    try:
        value = float(fps)
    except (TypeError, ValueError):
        value = math.nan
    if not (math.isfinite(value) and low <= value <= high):
        raise MocohdError(f"--fps must be a number from {low:g} to {high:g}, got {fps}",
                          fix="pass a frame rate such as --fps 8")
    if fmt == "gif" and value > GIF_MAX_FPS:
        raise MocohdError(f"--fps {fps}: a gif plays at most {GIF_MAX_FPS:g} frames per second",
                          fix=f"pass --fps {GIF_MAX_FPS:g} or less, or --format mp4")
    return value


def quantize(frames: Tensor) -> Tensor:
    """Frames in [-1, 1] (any shape) -> uint8 on the CPU, rounded: how every video file mocohd writes
    (and every generated frame it evaluates) becomes 8-bit. NaN or inf is an error: it would
    otherwise come out as black."""
    frames = frames.detach().float().cpu()
    if not torch.isfinite(frames).all():
        raise MocohdError("frames with NaN or inf values cannot become an image",
                          fix="check the generator's weights and inputs (--truncation, latents)")
    return ((frames.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def to_uint8(frames: Tensor) -> np.ndarray:
    """[T, 3, H, W] in [-1, 1] -> [T, H, W, 3] uint8."""
    return quantize(frames).permute(0, 2, 3, 1).contiguous().numpy()


class GridCanvas:
    """One video [T, 3, H', W'] that tiles `n` videos of shape [T, 3, H, W], `nrow` per row
    (padding in black, -1), filled batch by batch: a grid never needs its videos all at once."""

    def __init__(self, n: int, shape: tuple[int, ...], *, nrow: int | None = None, padding: int = 2,
                 like: Tensor | None = None):
        t, c, h, w = shape
        self.nrow = nrow or math.ceil(math.sqrt(n))
        self.padding, self.h, self.w = padding, h, w
        rows = math.ceil(n / self.nrow)
        size = (t, c, rows * (h + padding) + padding, self.nrow * (w + padding) + padding)
        self.frames = like.new_full(size, -1.0) if like is not None else torch.full(size, -1.0)

    @staticmethod
    def nbytes(n: int, shape: tuple[int, ...], *, nrow: int | None = None, padding: int = 2) -> int:
        """What the canvas of `n` videos of `shape` takes in float32."""
        t, c, h, w = shape
        nrow = nrow or math.ceil(math.sqrt(n))
        return 4 * t * c * (math.ceil(n / nrow) * (h + padding) + padding) * (nrow * (w + padding) + padding)

    def paste(self, start: int, videos: Tensor) -> None:
        """Videos [k, T, 3, H, W] into tiles start..start+k-1."""
        for index, video in enumerate(videos, start):  # a handful of tiles: a loop over tiles is clearest
            row, col = divmod(index, self.nrow)
            top, left = self.padding + row * (self.h + self.padding), self.padding + col * (self.w + self.padding)
            self.frames[:, :, top:top + self.h, left:left + self.w] = video


def video_grid(videos: Tensor, nrow: int | None = None, padding: int = 2) -> Tensor:
    """Tile videos [N, T, 3, H, W] into one video [T, 3, H', W'] (padding in black, -1)."""
    canvas = GridCanvas(videos.shape[0], tuple(videos.shape[1:]), nrow=nrow, padding=padding, like=videos)
    canvas.paste(0, videos)
    return canvas.frames


def image_grid(images: Tensor, nrow: int | None = None, padding: int = 2) -> Tensor:
    """Tile images [N, 3, H, W] into one image [3, H', W'], laid out as `video_grid` lays out videos."""
    return video_grid(images[:, None], nrow=nrow, padding=padding)[0]


@contextmanager
def _writing_folder(folder: Path) -> Iterator[Path]:
    """A temporary folder beside `folder` that replaces it once complete (stale frames of an
    earlier, longer video go with it); on an error the earlier folder stays as it was."""
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    except OSError as exc:
        raise write_error(folder, exc) from exc
    old = None
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700 folders: give what mkdir would
        if folder.is_dir() and not folder.is_symlink():
            old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".old", dir=folder.parent))
            os.replace(folder, old / folder.name)
        os.replace(tmp, folder)
    except OSError as exc:
        if old is not None and not folder.exists():
            os.replace(old / folder.name, folder)
        raise write_error(folder, exc) from exc
    finally:
        for leftover in (tmp, old):
            if leftover is not None and leftover.exists():
                shutil.rmtree(leftover, ignore_errors=True)


def save_image(image: Tensor, path: str | Path, *, scale: int = 1) -> Path:
    """Write one image [3, H, W] in [-1, 1] as a PNG, enlarged `scale` times (nearest neighbour)."""
    import imageio.v3 as iio

    if scale > 1:
        image = image.repeat_interleave(scale, dim=-2).repeat_interleave(scale, dim=-1)
    pixels = to_uint8(image[None])[0]
    with atomic_path(Path(path)) as tmp:
        iio.imwrite(tmp, pixels, extension=".png")
    return Path(path)


def _pad_to_even(frames: np.ndarray) -> np.ndarray:
    """H.264 in yuv420p needs even sides; pad by edge replication."""
    _, h, w, _ = frames.shape
    return np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")


def save_video(frames: Tensor, path: str | Path, fps: float = 8) -> Path:
    """Write one video [T, 3, H, W] in [-1, 1]; the format follows the suffix (.mp4, .gif, or a folder for PNG)."""
    import imageio.v3 as iio

    path = Path(path)
    suffix = path.suffix.lower().lstrip(".")
    if suffix not in ("", *FORMATS):
        raise MocohdError(f"unknown video format {suffix!r}", path=path, fix=f"use one of {', '.join(FORMATS)}")
    fps = check_fps(fps, suffix or "png")
    pixels = to_uint8(frames)
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
    else:
        folder = path.with_suffix("") if suffix else path
        with _writing_folder(folder) as tmp:
            for t, frame in enumerate(pixels):
                try:
                    iio.imwrite(tmp / f"frame_{t:04d}.png", frame, extension=".png")
                except OSError as exc:
                    raise write_error(folder / f"frame_{t:04d}.png", exc) from exc
        return folder
    return path


def check_out_dir(out_dir: str | Path) -> Path:
    """The output folder, made if missing; one clear error if it cannot hold files (a file of that
    name, a read-only place). Call it before expensive work, so that it fails early."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise MocohdError("the output folder (--out) exists and is not a folder", path=out_dir,
                          fix="pass another --out, or move that file away")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MocohdError(f"cannot make the output folder (--out): {exc.strerror or exc}", path=out_dir,
                          fix="pass an --out folder you can write to") from exc
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise MocohdError("the output folder (--out) is not writable", path=out_dir,
                          fix="pass an --out folder you can write to")
    return out_dir


def output_file(out_dir: str | Path, stem: str, fmt: str) -> Path:
    """The file (or, for PNG frames, folder) `stem` in format `fmt` under `out_dir`."""
    return Path(out_dir) / (stem if fmt == "png" else f"{stem}.{fmt}")


def video_name(out_dir: str | Path, index: int, total: int, fmt: str, prefix: str = "video") -> Path:
    """Where video `index` of `total` goes: <prefix>_0007.mp4 (more digits for more videos)."""
    digits = max(4, len(str(max(total - 1, 0))))
    return output_file(out_dir, f"{prefix}_{index:0{digits}d}", fmt)


def write_videos(videos: Tensor, out_dir: str | Path, *, fps: float = 8, fmt: str = "mp4", grid: bool = False,
                 prefix: str = "video", nrow: int | None = None, start: int = 0, total: int | None = None) -> list[Path]:
    """Write videos [N, T, 3, H, W] to `out_dir`: one file each (numbered from `start`, named for
    `total` videos in all), or one grid of `nrow` videos a row when `grid`."""
    if fmt not in FORMATS:
        raise MocohdError(f"unknown video format {fmt!r}", fix=f"use one of {', '.join(FORMATS)}")
    check_fps(fps, fmt)
    out_dir = check_out_dir(out_dir)
    if grid:
        return [save_video(video_grid(videos, nrow=nrow), output_file(out_dir, f"{prefix}_grid", fmt), fps)]
    total = total or start + len(videos)
    return [save_video(video, video_name(out_dir, i, total, fmt, prefix), fps) for i, video in enumerate(videos, start)]
