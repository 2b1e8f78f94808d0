"""Differentiable augmentations (mocohd_cli.models.augment): the cross-domain image
discriminator's and DiffAugment's."""
from __future__ import annotations

import functools

import pytest
import torch

from mocohd_cli.models.augment import affine_warp, augment, colour_shift, cutout, diff_augment, flip, two_views

OPS = {
    "cutout": cutout,
    "flip": flip,
    "colour_shift": colour_shift,
    "affine_warp": affine_warp,
    "augment": augment,
    "diff_augment": diff_augment,
}
# Ops that only move, mirror, interpolate or zero values: they keep images inside [-1, 1]
# (the colour shift, and so the composites, may leave it, as in the release).
RANGE_KEEPING = ("cutout", "flip", "affine_warp")


def _images(n=8, size=16, seed=0, width=None):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, width or size, generator=generator) * 2 - 1


def _seeded(seed):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("name", OPS)
@pytest.mark.parametrize("strength", [1.0, 0.5])
def test_shape_is_kept_and_range_where_the_op_keeps_it(name, strength):
    images = _images(n=16, width=12)  # non-square on purpose
    out = OPS[name](images, rng=_seeded(1), strength=strength)
    assert out.shape == images.shape and out.dtype == images.dtype
    if name in RANGE_KEEPING:
        assert out.min() >= -1.0 and out.max() <= 1.0
    assert not torch.equal(out, images)


@pytest.mark.parametrize("name", OPS)
def test_zero_strength_is_exactly_the_identity(name):
    images = _images()
    images[0, 0, 0, 0] = 1.7  # out of range on purpose: still untouched
    out = OPS[name](images, rng=_seeded(1), strength=0.0)
    assert torch.equal(out, images)


@pytest.mark.parametrize("name", OPS)
def test_seeded_runs_are_reproducible(name):
    images = _images(n=16)
    first = OPS[name](images, rng=_seeded(3))
    again = OPS[name](images, rng=_seeded(3))
    other = OPS[name](images, rng=_seeded(4))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


@pytest.mark.parametrize("name", OPS)
def test_gradients_reach_the_images(name):
    images = _images(n=6).requires_grad_()
    weights = torch.randn(images.shape, generator=_seeded(9))
    (OPS[name](images, rng=_seeded(2)) * weights).sum().backward()
    assert images.grad is not None and torch.isfinite(images.grad).all()
    assert images.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["cutout", "flip", "colour_shift", "affine_warp"])
def test_gradients_are_exact(name):
    op = functools.partial(OPS[name], strength=0.8)
    images = (torch.rand(3, 3, 6, 6, generator=_seeded(0), dtype=torch.float64) * 1.6 - 0.8)
    images.requires_grad_()
    assert torch.autograd.gradcheck(lambda x: op(x, rng=_seeded(5)), (images,))


def test_cutout_zeroes_one_square_in_a_border_band():
    size = 32
    ones = torch.ones(64, 3, size, size)
    out = cutout(ones, rng=_seeded(0))
    zero = out[:, 0] == 0
    assert torch.equal(zero.unsqueeze(1).expand_as(out), out == 0)  # all channels alike
    band = size // 4
    for hole in zero:  # test-side check, one sample at a time
        rows = hole.any(dim=1).nonzero().flatten()
        cols = hole.any(dim=0).nonzero().flatten()
        side = len(rows)
        assert side == len(cols) and size // 8 <= side <= size // 4
        assert hole.sum() == side * side  # a filled square
        assert rows[0] >= 0 and cols[0] >= 0 and rows[-1] < size and cols[-1] < size
        in_band = rows[-1] < band or rows[0] >= size - band or cols[-1] < band or cols[0] >= size - band
        assert in_band


def test_cutout_anywhere_reaches_the_centre():
    ones = torch.ones(256, 1, 32, 32)
    out = cutout(ones, rng=_seeded(0), placement="anywhere")
    assert (out[:, 0, 12:20, 12:20] == 0).any()
    border = cutout(ones, rng=_seeded(0))
    assert not (border[:, 0, 8:24, 8:24] == 0).any()


def test_flip_mirrors_about_half_of_the_samples():
    images = _images(n=200)
    out = flip(images, rng=_seeded(0))
    same = (out == images).flatten(1).all(dim=1)
    mirrored = (out == images.flip(-1)).flatten(1).all(dim=1)
    assert (same | mirrored).all()
    assert 60 < mirrored.sum() < 140
    weak = flip(images, rng=_seeded(0), strength=0.2)  # flips 1 in 10
    assert (weak == images.flip(-1)).flatten(1).all(dim=1).sum() < 40


def test_colour_shift_moves_one_or_all_channels_by_at_most_half():
    zeros = torch.zeros(400, 3, 4, 4)
    out = colour_shift(zeros, rng=_seeded(0))
    shift = out[:, :, 0, 0]
    assert torch.equal(out, shift[:, :, None, None].expand_as(out))  # constant per channel
    assert shift.abs().max() <= 0.5
    moved = shift != 0
    all_channels = moved.all(dim=1) & (shift == shift[:, :1]).all(dim=1)
    one_channel = moved.sum(dim=1) == 1
    assert (all_channels | one_channel).all()
    assert 60 < all_channels.sum() < 140  # 1 in 4
    assert shift.abs().max() > 0.45


def test_colour_shift_is_not_clamped_and_passes_gradients_out_of_range():
    near_edges = torch.tensor([-0.95, 0.95]).view(1, 1, 1, 2).expand(300, 3, 1, 2).contiguous().requires_grad_()
    out = colour_shift(near_edges, rng=_seeded(0))
    assert out.min() < -1.2 and out.max() > 1.2  # shifts of up to 0.5 go past the edges
    outside = out.detach().abs() > 1.0
    assert outside.any()
    (out * outside).sum().backward()  # only the values that left [-1, 1]
    # a pure shift: d out / d in is 1 there (a clamp would have made it 0)
    assert torch.equal(near_edges.grad, outside.float())


def test_affine_warp_pads_by_reflection():
    grey = torch.full((32, 3, 16, 16), 0.3)
    out = affine_warp(grey, rng=_seeded(0))  # zero padding would bring in zeros
    assert torch.allclose(out, grey, atol=1e-6)


def test_affine_warp_with_zero_ranges_is_near_identity():
    images = _images(n=4)
    out = affine_warp(images, rng=_seeded(0), max_rotation=0.0, max_scale=0.0, max_translation=0.0)
    assert torch.allclose(out, images, atol=1e-5)


def test_augment_picks_a_different_op_per_sample():
    # One image repeated: the samples must not all be augmented alike.
    images = _images(n=1, size=16).expand(32, -1, -1, -1)
    out = augment(images, rng=_seeded(0))
    distinct = torch.unique(out.flatten(1), dim=0)
    assert len(distinct) > 16


def test_augment_without_colour_never_shifts_colour():
    # One flat colour per channel: flips and warps (reflection padding) keep it, the cutout zeroes
    # pixels and the warp blends them with the colour; only a colour shift leaves [min(0, c), max(0, c)].
    colour = torch.tensor([0.3, -0.6, 0.8]).view(1, 3, 1, 1)
    flat = colour.expand(64, 3, 16, 16)
    low, high = colour.clamp(max=0) - 1e-5, colour.clamp(min=0) + 1e-5

    def colour_kept(out):
        return bool(((out >= low) & (out <= high)).all())

    assert colour_kept(augment(flat, rng=_seeded(0), colour=False))
    assert all(colour_kept(view) for view in two_views(flat, _seeded(1), colour=False))
    assert not colour_kept(augment(flat, rng=_seeded(0)))  # the release's set shifts some


def test_two_views_differ_and_are_reproducible():
    images = _images()
    view1, view2 = two_views(images, _seeded(0))
    again1, again2 = two_views(images, _seeded(0))
    assert torch.equal(view1, again1) and torch.equal(view2, again2)
    assert not torch.equal(view1, view2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_augment_runs_on_cuda_with_a_cpu_generator():
    images = _images().cuda().requires_grad_()
    out = augment(images, rng=_seeded(0))
    assert out.device == images.device
    out.sum().backward()
    cpu = augment(images.detach().cpu(), rng=_seeded(0))
    assert torch.allclose(out.detach().cpu(), cpu, atol=1e-5)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError):
        augment(torch.zeros(3, 8, 8))
    with pytest.raises(ValueError):
        augment(torch.zeros(1, 3, 8, 8), strength=1.5)
    with pytest.raises(ValueError):
        cutout(torch.zeros(1, 3, 8, 8), placement="middle")
