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

from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from ..infra.errors import MocohdError
from .clips import frames_to_clip
from .decode import reason
from .pixels import pillow_to_rgb

_EXIF_ORIENTATION = 0x0112


@dataclass
class InputImage:
    path: Path
    pixels: Tensor  # [3, size, size] in [-1, 1]
    notes: list[str] = field(default_factory=list)  # the conversions made, in words

    @property
    def name(self) -> str:
        return self.path.stem


def read_image(path: str | Path, size: int) -> InputImage:
    """One image file -> `InputImage` at `size` x `size` (see the module's docstring for the rules)."""
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
