"""Relativistic-average LSGAN, gradient penalty and time reversal, checked against hand computations."""
from __future__ import annotations

import pytest
import torch

from mocohd_cli.models.losses import (gradient_penalty, ra_lsgan_d_loss, ra_lsgan_g_loss, random_time_reverse,
                                      shared_drift_loss)


def scales(*lasts):
    """Fake discriminator outputs: each scale's list ends with the given tensor."""
    return [[torch.zeros(1), last] for last in lasts]


def test_ra_lsgan_values():
    real, fake = scales(torch.ones(4)), scales(torch.zeros(4))
    # D: MSE(1 - 0, 1) + MSE(0 - 1, 0) = 0 + 1, halved
    assert ra_lsgan_d_loss(real, fake).item() == pytest.approx(0.5)
    # G: MSE(0 - 1, 1) + MSE(1 - 0, 0) = 4 + 1, halved
    assert ra_lsgan_g_loss(real, fake).item() == pytest.approx(2.5)


def test_ra_lsgan_sums_over_scales_and_uses_the_batch_mean():
    real = scales(torch.tensor([1.0, 3.0]), torch.ones(2))
    fake = scales(torch.tensor([0.0, 2.0]), torch.zeros(2))
    # scale 0: real - mean(fake) = [0, 2] -> MSE to 1 = 1; fake - mean(real) = [-2, 0] -> MSE to 0 = 2
    # scale 1: 0 + 1 (as above)
    assert ra_lsgan_d_loss(real, fake).item() == pytest.approx(0.5 * (1 + 2) + 0.5)


def test_gradient_penalty_of_a_linear_critic():
    """D(x) = sum_c w_c x_c at every position: the gradient's channel norm is ||w|| everywhere."""
    w = torch.tensor([2.0, 0.0, 0.0]).view(1, 3, 1, 1, 1)

    def critic(x):
        out = (w * x).sum(dim=1, keepdim=True)
        return [[out], [out * 0.5]]  # scale 2: norm 1, no penalty

    real, fake = torch.randn(2, 3, 2, 4, 4), torch.randn(2, 3, 2, 4, 4)
    penalty = gradient_penalty(critic, real, fake, weight=10.0)
    assert penalty.item() == pytest.approx(10.0 * ((2 - 1) ** 2 + 0) / 2)


def test_gradient_penalty_trains_the_discriminator():
    disc = torch.nn.Conv3d(3, 1, 1)
    penalty = gradient_penalty(lambda x: [[disc(x)]], torch.randn(2, 3, 2, 4, 4), torch.randn(2, 3, 2, 4, 4))
    penalty.backward()
    assert disc.weight.grad is not None and disc.weight.grad.abs().sum() > 0


def test_random_time_reverse_flips_the_whole_batch_or_nothing():
    clips = torch.arange(2 * 4).float().view(2, 1, 4)
    outcomes = set()
    for seed in range(20):
        out = random_time_reverse(clips, 2, torch.Generator().manual_seed(seed))
        assert torch.equal(out, clips) or torch.equal(out, clips.flip(2))
        outcomes.add(torch.equal(out, clips))
    assert outcomes == {True, False}


def _trajectories(displacements: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """Latents [B, 2, D] whose step from frame 0 has PCA coordinates `displacements` [B, n]."""
    scales = basis.norm(dim=1)
    w0 = torch.randn(displacements.shape[0], basis.shape[1])
    step = (displacements * scales) @ (basis / scales[:, None])
    return torch.stack([w0, w0 + step], dim=1)


def test_shared_drift_counts_only_what_the_videos_share():
    torch.manual_seed(0)
    components = torch.linalg.qr(torch.randn(6, 6))[0][:4]  # 4 orthonormal directions in 6-d
    basis = torch.tensor([3.0, 2.0, 1.0, 0.5])[:, None] * components
    common = torch.tensor([0.5, 0.0, 0.0, 0.0])
    own = torch.tensor([[0.0, 2.0, 0.0, 0.0], [0.0, 0.0, 3.0, 0.0], [0.0, 0.0, 0.0, 4.0]])
    # each video: the shared step plus a large step of its own, orthogonal to the others'
    loss = shared_drift_loss(_trajectories(common + own, basis), basis)
    assert loss.item() == pytest.approx(0.25 / 4, rel=1e-4)  # ||common||^2 / n, whatever the own steps
    # every video walking the same way is penalised in full; opposite walks and a lone video are not
    same = shared_drift_loss(_trajectories(torch.tensor([[1.0, 1.0, 0, 0]] * 3), basis), basis)
    assert same.item() == pytest.approx(2.0 / 4, rel=1e-4)
    opposite = torch.tensor([[1.0, 0, 0, 0], [-1.0, 0, 0, 0]])
    assert shared_drift_loss(_trajectories(opposite, basis), basis).item() == 0.0
    assert shared_drift_loss(_trajectories(own[:1], basis), basis).item() == 0.0


def test_shared_drift_gradient_leaves_a_videos_own_motion_alone():
    torch.manual_seed(0)
    basis = torch.eye(3)
    latents = _trajectories(torch.tensor([[1.0, 2.0, 0.0], [1.0, 0.0, 2.0]]), basis).requires_grad_(True)
    shared_drift_loss(latents, basis).backward()
    grad = latents.grad[:, 1]
    # pulled back along the shared first axis only; each video's own axis gets no gradient
    assert grad[:, 0].gt(0).all()
    assert grad[0, 1].item() == 0.0 and grad[1, 2].item() == 0.0
