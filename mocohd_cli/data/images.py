"""Still images given by the user (`mocohd animate IMAGE ...`), read as a backbone sees its frames.

What is converted and what is refused (docs/animate.md, "Input images"): grey, palette, CMYK and
16-bit images become 8-bit RGB; alpha is dropped; an animated file gives its first frame; EXIF
orientation is applied; any size and aspect becomes the backbone's square resolution (centre
crop, Lanczos resize, as training frames: `frames_to_clip`). Each conversion is reported as a
note. A missing or unreadable file, or one whose pixels are 32-bit (float or integer beyond 16
bits), is a MocohdError naming the file and the fix.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from torch import Tensor

from ..infra.errors import MocohdError
from .clips import frames_to_clip
from .decode import reason

_RESAVE = "save it as an 8-bit RGB PNG or JPEG"
_EXIF_ORIENTATION = 0x0112


@dataclass
class InputImage:
    path: Path
    pixels: Tensor  # [3, size, size] in [-1, 1]
    notes: list[str] = field(default_factory=list)  # the conversions made, in words

    @property
    def name(self) -> str:
        return self.path.stem


def _sixteen_bit_grey(image, path: Path, notes: list[str]) -> np.ndarray:
    """Pillow's own conversion of 16-bit grey to 8 bits clips at 255; scale instead."""
    values = np.asarray(image).astype(np.float64)
    if image.mode == "I" and (values.min() < 0 or values.max() > 65535):
        raise MocohdError(f"32-bit integer pixels (range {values.min():.0f}..{values.max():.0f}) cannot be read "
                          "as an image", path=path, fix=_RESAVE)
    notes.append("16-bit grey -> 8-bit RGB")
    return np.repeat(np.rint(values / 257.0).astype(np.uint8)[..., None], 3, axis=-1)


def pillow_to_rgb(image, path: Path, notes: list[str] | None = None) -> np.ndarray:
    """A Pillow image of any mode -> uint8 [H, W, 3], noting each conversion (16-bit grey is scaled,
    not clipped as Pillow's own conversion does). Dataset frames and input images both come here."""
    notes = [] if notes is None else notes
    mode = image.mode
    if mode == "F":
        raise MocohdError("32-bit floating-point pixels cannot be read as an image", path=path, fix=_RESAVE)
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


def read_image(path: str | Path, size: int) -> InputImage:
    """One image file -> `InputImage` at `size` x `size` (see the module's docstring for the rules)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.exists():
        raise MocohdError("image not found", path=path, fix="check the path")
    if not path.is_file():
        raise MocohdError("not an image file (a folder?)", path=path, fix="pass image files (PNG, JPEG, ...)")
    notes: list[str] = []
    try:
        with Image.open(path) as image:
            if getattr(image, "n_frames", 1) > 1:
                notes.append(f"first of its {image.n_frames} frames")
            image.load()
            if image.getexif().get(_EXIF_ORIENTATION, 1) != 1:
                notes.append("turned as its EXIF orientation says")
                image = ImageOps.exif_transpose(image)
            pixels = pillow_to_rgb(image, path, notes)
    except MocohdError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise MocohdError(f"cannot read this image ({reason(exc)})", path=path,
                          fix="pass a PNG, JPEG, WebP, BMP, TIFF or GIF file that opens in an image viewer") from exc
    h, w = pixels.shape[:2]
    if h != w:
        notes.append(f"centre-cropped {w}x{h} -> {min(h, w)}x{min(h, w)}")
    if min(h, w) != size:
        notes.append(f"resized {min(h, w)}x{min(h, w)} -> {size}x{size}")
    return InputImage(path, frames_to_clip(pixels[None], size)[0], notes)


def read_images(paths: list[str | Path], size: int) -> list[InputImage]:
    """Every image of `paths` at `size` x `size`; the first bad file stops with its error."""
    if not paths:
        raise MocohdError("no images given", fix="pass one or more image files: mocohd animate IMAGE [IMAGE ...]")
    return [read_image(p, size) for p in paths]
