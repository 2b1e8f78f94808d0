"""Relativistic-average LSGAN, gradient penalty and time reversal, checked against hand computations."""
from __future__ import annotations

import pytest
import torch

from mocohd_cli.models.losses import (gradient_penalty, ra_lsgan_d_loss, ra_lsgan_g_loss, random_time_reverse,
                                      RunningSharedDrift, shared_drift_loss)


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


def test_shared_drift_counts_only_what_the_videos_share():
    common = torch.tensor([0.5, 0.0, 0.0, 0.0])
    own = torch.tensor([[0.0, 2.0, 0.0, 0.0], [0.0, 0.0, 3.0, 0.0], [0.0, 0.0, 0.0, 4.0]])
    # each video: the shared step plus a large step of its own, orthogonal to the others'
    loss = shared_drift_loss((common + own)[:, None])
    assert loss.item() == pytest.approx(0.25 / 4, rel=1e-5)  # ||common||^2 / n, whatever the own steps
    # every video walking the same way is penalised in full; a lone video is not
    assert shared_drift_loss(torch.ones(3, 1, 4)).item() == pytest.approx(1.0)
    assert shared_drift_loss(own[:1, None]).item() == 0.0


def test_shared_drift_is_unbiased_for_independent_motion():
    """Videos that move independently (no shared drift) cost nothing on average, however far they move."""
    torch.manual_seed(0)
    walks = torch.randn(20_000, 4, 8, 16).cumsum(2)  # 20k batches of 4 independent random walks
    losses = torch.stack([shared_drift_loss(batch) for batch in walks[:2000]])
    assert abs(losses.mean().item()) < 4 * losses.std().item() / 2000 ** 0.5
    drifting = torch.stack([shared_drift_loss(batch + 0.5 * torch.arange(1, 9.0)[:, None]) for batch in walks[:200]])
    assert drifting.mean().item() > 20 * losses.std().item() / 2000 ** 0.5


def test_shared_drift_gradient_leaves_a_videos_own_motion_alone():
    z = torch.tensor([[[1.0, 2.0, 0.0]], [[1.0, 0.0, 2.0]]], requires_grad=True)
    shared_drift_loss(z).backward()
    # pulled back along the shared first axis only; each video's own axis gets no gradient
    assert z.grad[:, 0, 0].gt(0).all()
    assert z.grad[0, 0, 1].item() == 0.0 and z.grad[1, 0, 2].item() == 0.0


def test_running_shared_drift_pushes_every_video_against_the_shared_walk_only():
    """The gradient is the running shared walk, the same for every video, and far less noisy than the
    pairs' (which push each video by the others' own motion)."""
    torch.manual_seed(0)
    shared = torch.tensor([0.3, 0.0, 0.0, 0.0])
    penalty = RunningSharedDrift(1, 4, momentum=0.98)
    running_grads, pair_grads = [], []
    for _ in range(400):
        z = (shared + torch.randn(4, 1, 4)).requires_grad_(True)  # 4 videos: the walk + their own motion
        (grad,) = torch.autograd.grad(penalty(z), z)
        assert torch.allclose(grad, grad[:1].expand_as(grad))  # one push, the same for every video
        running_grads.append(grad[0, 0])
        pair_grads.append(torch.autograd.grad(shared_drift_loss(z), z)[0][0, 0])
    late = torch.stack(running_grads[200:])
    # pointing against the shared axis (the bias-corrected running mean / (B n)); the own axes cancel
    assert late[:, 0].mean().item() == pytest.approx(0.3 / 16, rel=0.2)
    assert late[:, 1:].abs().mean().item() < 0.2 * late[:, 0].mean().item()
    assert torch.stack(pair_grads[200:]).std(0).mean() > 3 * late.std(0).mean()


def test_running_shared_drift_value_is_the_bias_corrected_running_mean_times_the_batch_mean():
    penalty = RunningSharedDrift(1, 2, momentum=0.5)
    first, second = torch.tensor([[[1.0, 0.0]], [[3.0, 2.0]]]), torch.tensor([[[0.0, 2.0]], [[2.0, 0.0]]])
    m1, m2 = first.mean(0)[0], second.mean(0)[0]  # batch means [2, 1] and [1, 1]
    # after one update the bias-corrected mean is the first batch's own mean: the full walk, not half of it
    assert penalty(first).item() == pytest.approx(float(m1 @ m1) / 2)
    # then (0.25 m1 + 0.5 m2) / (1 - 0.25): the current batch enters with weight 1 - momentum
    assert penalty(second).item() == pytest.approx(float(((m1 + 2 * m2) / 3) @ m2) / 2)
    assert penalty.updates.item() == 2
    with pytest.raises(ValueError):
        RunningSharedDrift(2, 3, momentum=1.0)
