"""Differentiable image augmentations: the cross-domain image discriminator's (docs/method.md, "Augmentations") and
DiffAugment's for GAN training of image generators.

Every op works on a whole batch ``[N, C, H, W]`` at once (no loop over samples), on any
device, draws its randomness from an optional seeded ``torch.Generator`` and lets gradients
flow to the images.

``strength`` (0..1) scales every augmentation: cutout size, flip probability, colour shift
and affine parameters. At strength 0 each op (and ``augment``, ``diff_augment``) returns its
input unchanged.

The composite ``augment`` follows the authors' release: a cutout, then per sample one of a
horizontal flip (which itself flips half of the time), a colour shift or an affine warp.
``diff_augment`` applies DiffAugment's colour + translation + cutout policy to every image
(used on everything a discriminator sees, reals and fakes alike).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "affine_warp",
    "augment",
    "colour_shift",
    "cutout",
    "diff_augment",
    "flip",
    "two_views",
]

# The choice `augment` makes per sample after the cutout.
_FLIP, _COLOUR, _AFFINE = 0, 1, 2


def _check_images(images: Tensor) -> None:
    if images.dim() != 4:
        raise ValueError(f"expected images [N, C, H, W], got shape {tuple(images.shape)}")


def _check_strength(strength: float) -> None:
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must lie in [0, 1], got {strength}")


def _uniform(n: int, low: float, high: float, rng: torch.Generator | None,
             device: torch.device, *extra: int) -> Tensor:
    """``n`` uniform draws in [low, high), drawn where the generator lives, then moved."""
    where = rng.device if rng is not None else device
    draws = torch.rand((n, *extra), generator=rng, device=where)
    return (low + (high - low) * draws).to(device)


def _integers(n: int, high: int, rng: torch.Generator | None, device: torch.device) -> Tensor:
    where = rng.device if rng is not None else device
    return torch.randint(high, (n,), generator=rng, device=where).to(device)


def _where_samples(mask: Tensor | None, changed: Tensor, images: Tensor) -> Tensor:
    """Per sample: ``changed`` where ``mask`` (bool [N]) is set, else the untouched images."""
    if mask is None:
        return changed
    return torch.where(mask.view(-1, 1, 1, 1), changed, images)


def cutout(images: Tensor, *, rng: torch.Generator | None = None, strength: float = 1.0,
           min_ratio: float = 0.125, max_ratio: float = 0.25, placement: str = "border",
           mask: Tensor | None = None) -> Tensor:
    """Zero a square whose side is uniform in [min_ratio, max_ratio] * strength of the image side.

    placement "border" (the authors' choice) puts the square inside a band of width
    max_ratio * strength along one of the four edges, picked at random; "anywhere" places it
    uniformly inside the image. ``mask`` (bool [N]) limits the op to some samples.
    """
    _check_images(images)
    _check_strength(strength)
    if placement not in ("border", "anywhere"):
        raise ValueError(f"placement must be 'border' or 'anywhere', got {placement!r}")
    n, _, height, width = images.shape
    device = images.device
    band = max_ratio * strength
    ratio = _uniform(n, min_ratio * strength, band, rng, device)      # side / image side
    # Position of the square's top-left corner as fractions of the height and width.
    along = _uniform(n, 0.0, 1.0, rng, device)                        # along the edge
    across = _uniform(n, 0.0, 1.0, rng, device)                       # into the band
    if placement == "border":
        edge = _integers(n, 4, rng, device)  # 0 top, 1 bottom, 2 left, 3 right
        into = across * (band - ratio)              # offset from the chosen edge
        along = along * (1.0 - band)
        near = torch.where(edge % 2 == 0, into, 1.0 - ratio - into)
        top = torch.where(edge < 2, near, along)
        left = torch.where(edge < 2, along, near)
    else:
        top = across * (1.0 - ratio)
        left = along * (1.0 - ratio)
    side = torch.floor(ratio * min(height, width))                         # pixels, square
    top = torch.floor(top * height)
    left = torch.floor(left * width)
    rows = torch.arange(height, device=device, dtype=top.dtype).view(1, -1, 1)
    cols = torch.arange(width, device=device, dtype=top.dtype).view(1, 1, -1)
    inside = ((rows >= top.view(-1, 1, 1)) & (rows < (top + side).view(-1, 1, 1))
              & (cols >= left.view(-1, 1, 1)) & (cols < (left + side).view(-1, 1, 1)))
    if mask is not None:
        inside = inside & mask.view(-1, 1, 1)
    # Multiplying (rather than assigning) keeps the op differentiable w.r.t. the images.
    keep = (~inside).to(images.dtype).unsqueeze(1)
    return images * keep


def flip(images: Tensor, *, rng: torch.Generator | None = None, strength: float = 1.0,
         mask: Tensor | None = None) -> Tensor:
    """Mirror left-right each sample with probability strength / 2 (the release's coin flip)."""
    _check_images(images)
    _check_strength(strength)
    coin = _uniform(images.shape[0], 0.0, 1.0, rng, images.device) < 0.5 * strength
    if mask is not None:
        coin = coin & mask
    return torch.where(coin.view(-1, 1, 1, 1), images.flip(-1), images)


def colour_shift(images: Tensor, *, rng: torch.Generator | None = None,
                 strength: float = 1.0, max_shift: float = 0.5, mask: Tensor | None = None) -> Tensor:
    """Add a shift uniform in [-max_shift, max_shift) * strength to all channels or to one.

    Each of "all channels", "channel 0", "channel 1", ... is equally likely. As in the release
    the result is not clamped: values may leave [-1, 1], and gradients pass everywhere.
    """
    _check_images(images)
    _check_strength(strength)
    n, channels = images.shape[:2]
    device = images.device
    shift = _uniform(n, -max_shift * strength, max_shift * strength, rng, device)
    which = _integers(n, channels + 1, rng, device)  # 0 = all, c + 1 = channel c only
    per_channel = torch.arange(1, channels + 1, device=device).view(1, -1)
    hit = (which.view(-1, 1) == 0) | (which.view(-1, 1) == per_channel)      # [N, C]
    if mask is not None:
        hit = hit & mask.view(-1, 1)
    offset = (shift.view(-1, 1) * hit).to(images.dtype).view(n, channels, 1, 1)
    return images + offset


def affine_warp(images: Tensor, *, rng: torch.Generator | None = None,
                strength: float = 1.0, max_rotation: float = 180.0,
                max_translation: float = 0.1, max_scale: float = 0.05,
                mask: Tensor | None = None) -> Tensor:
    """Rotate (uniform within +-max_rotation degrees), translate (+-max_translation, in the
    [-1, 1] grid units of affine_grid) and scale (1 +- max_scale), all scaled by strength,
    with reflection padding. Bilinear resampling is differentiable w.r.t. the images.
    """
    _check_images(images)
    _check_strength(strength)
    n = images.shape[0]
    device = images.device
    angle = _uniform(n, -1.0, 1.0, rng, device) * math.radians(max_rotation) * strength
    shift = _uniform(n, -1.0, 1.0, rng, device, 2) * max_translation * strength
    scale = 1.0 + _uniform(n, -1.0, 1.0, rng, device) * max_scale * strength
    if strength == 0.0:
        return images  # resampling on the identity grid is not bit-exact, so skip it
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    theta = torch.stack([
        torch.stack([cos, -sin, shift[:, 0]], dim=1),
        torch.stack([sin, cos, shift[:, 1]], dim=1),
    ], dim=1).to(images.dtype)                                               # [N, 2, 3]
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    warped = F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection",
                           align_corners=False)
    return _where_samples(mask, warped, images)


def augment(images: Tensor, *, rng: torch.Generator | None = None,
            strength: float = 1.0, colour: bool = True) -> Tensor:
    """Cutout, then per sample one of flip / colour shift / affine warp (equally likely).

    images [N, C, H, W] -> [N, C, H, W]; the colour shift may take values out of [-1, 1].
    ``colour=False`` (not in the release) leaves the colour shift out: one of flip / affine warp.
    """
    _check_images(images)
    _check_strength(strength)
    out = cutout(images, rng=rng, strength=strength)
    if colour:
        choice = _integers(images.shape[0], 3, rng, images.device)
    else:
        choice = torch.where(_integers(images.shape[0], 2, rng, images.device) == 0, _FLIP, _AFFINE)
    out = flip(out, rng=rng, strength=strength, mask=choice == _FLIP)
    out = colour_shift(out, rng=rng, strength=strength, mask=choice == _COLOUR)
    return affine_warp(out, rng=rng, strength=strength, mask=choice == _AFFINE)


def two_views(images: Tensor, rng: torch.Generator | None = None, *,
              strength: float = 1.0, colour: bool = True) -> tuple[Tensor, Tensor]:
    """Two independently augmented views of the same images."""
    return (augment(images, rng=rng, strength=strength, colour=colour),
            augment(images, rng=rng, strength=strength, colour=colour))


def diff_augment(images: Tensor, *, rng: torch.Generator | None = None, strength: float = 1.0) -> Tensor:
    """DiffAugment's colour + translation + cutout policy, applied to every image.

    A colour shift of up to +-0.3 (all channels or one), a translation of up to 1/8 of the side
    with reflection padding, and a cutout of 1/4-1/2 of the side anywhere in the image.
    """
    _check_images(images)
    _check_strength(strength)
    if strength == 0.0:
        return images
    images = colour_shift(images, rng=rng, strength=strength, max_shift=0.3)
    images = affine_warp(images, rng=rng, strength=strength, max_rotation=0.0, max_translation=0.25, max_scale=0.0)
    return cutout(images, rng=rng, strength=strength, min_ratio=0.25, max_ratio=0.5, placement="anywhere")
