"""Pillow images of any mode as 8-bit RGB pixels: the one conversion dataset frames (data/decode.py) and
the user's input images (data/images.py) both go through."""
from __future__ import annotations

from pathlib import Path

from PIL import Image
import numpy as np
import torch
from torch import Tensor

from ..infra.errors import MocohdError

RESAVE = "save it as an 8-bit RGB PNG or JPEG"


def _sixteen_bit_grey(image, path: Path, notes: list[str]) -> np.ndarray:
    """Pillow's own conversion of 16-bit grey to 8 bits clips at 255; scale instead."""
    values = np.asarray(image).astype(np.float64)
    if image.mode == "I" and (values.min() < 0 or values.max() > 65535):
        raise MocohdError(f"32-bit integer pixels (range {values.min():.0f}..{values.max():.0f}) cannot be read "
                          "as an image", path=path, fix=RESAVE)
    notes.append("16-bit grey -> 8-bit RGB")
    return np.repeat(np.rint(values / 257.0).astype(np.uint8)[..., None], 3, axis=-1)


def pillow_to_rgb(image, path: Path, notes: list[str] | None = None) -> np.ndarray:
    """A Pillow image of any mode -> uint8 [H, W, 3], noting each conversion (16-bit grey is scaled,
    not clipped as Pillow's own conversion does). Dataset frames and input images both come here."""
    notes = [] if notes is None else notes
    mode = image.mode
    if mode == "F":
        raise MocohdError("32-bit floating-point pixels cannot be read as an image", path=path, fix=RESAVE)
    if mode.startswith("I"):
        return _sixteen_bit_grey(image, path, notes)
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in image.info)
    if has_alpha:
        alpha = np.asarray(image.convert("RGBA"))[..., 3]
        transparent = float((alpha < 255).mean())
        notes.append("alpha dropped" + (f" ({transparent:.0%} of the pixels were not opaque; their stored colour "
                                        "is used)" if transparent else ""))
    if mode in ("L", "LA", "1", "La"):
        notes.append("grey -> RGB")
    elif mode not in ("RGB", "RGBA", "RGBa", "RGBX"):
        notes.append(f"{mode} -> RGB")
    return np.asarray(image.convert("RGB"))


def frames_to_clip(frames: np.ndarray, size: int) -> Tensor:
    """[T, H, W, 3] uint8 -> [T, 3, size, size] in [-1, 1]: centre crop to a square, then resize
    with PIL's Lanczos filter (as the authors' release resizes real frames)."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8:
        frames = np.clip(np.rint(frames), 0, 255).astype(np.uint8)
    h, w = frames.shape[1:3]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    frames = frames[:, top:top + side, left:left + side]
    if side != size:
        frames = np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(frame)).resize(
            (size, size), Image.Resampling.LANCZOS)) for frame in frames])
    # in NumPy: torch's thread pool costs more than this arithmetic on a small clip
    clip = frames.transpose(0, 3, 1, 2).astype(np.float32) / np.float32(127.5) - np.float32(1.0)
    return torch.from_numpy(np.ascontiguousarray(clip))
