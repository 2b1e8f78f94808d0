"""GAN losses of the in-domain objective (docs/method.md, "Losses"): relativistic-average LSGAN over the
scales of a multi-scale discriminator, the gradient penalty, and random time reversal; and the
StyleGAN2 recipe for training image generators: the logistic losses and the R1 penalty.

Discriminator outputs are nested lists: one list of layer outputs per scale; only each
scale's last output enters the losses. The MI loss lives beside the motion generator
(`mocohd_cli.models.motion.mutual_information_loss`).
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from .contrastive import gather_features

ScaleOutputs = list[list[Tensor]]


def _relativistic(outputs: ScaleOutputs, others: ScaleOutputs, target: float) -> Tensor:
    """sum over scales of MSE(D(x) - mean D(y), target), in fp32 whatever the discriminators ran in."""
    total = 0.0
    for mine, theirs in zip(outputs, others):
        pred = mine[-1].float()
        total = total + F.mse_loss(pred - theirs[-1].float().mean(), torch.full_like(pred, target))
    return total


def ra_lsgan_d_loss(real: ScaleOutputs, fake: ScaleOutputs) -> Tensor:
    """Discriminator: real above the average fake, fake below the average real; halved."""
    return 0.5 * (_relativistic(real, fake, 1.0) + _relativistic(fake, real, 0.0))


def ra_lsgan_g_loss(real: ScaleOutputs, fake: ScaleOutputs) -> Tensor:
    """Generator: the same with the targets swapped."""
    return 0.5 * (_relativistic(fake, real, 1.0) + _relativistic(real, fake, 0.0))


def gradient_penalty(discriminator: Callable[[Tensor], ScaleOutputs], real: Tensor, fake: Tensor, *,
                     weight: float = 10.0, rng: torch.Generator | None = None) -> Tensor:
    """weight * mean over scales of mean((||grad||_2 - 1)^2) at random interpolates of real and fake.

    One mixing weight per sample; as in the release the norm runs over the channel axis
    (dim 1) at each position. Run in fp32: second-order gradients under fp16 autocast
    overflow easily.
    """
    alpha = torch.rand(real.shape[0], generator=rng, device=real.device, dtype=torch.float32)
    alpha = alpha.view(-1, *([1] * (real.dim() - 1)))
    mixed = (alpha * real.detach().float() + (1 - alpha) * fake.detach().float()).requires_grad_(True)
    with torch.autocast(device_type=real.device.type, enabled=False):
        outputs = discriminator(mixed)
        penalty = 0.0
        for scale in outputs:
            (grad,) = torch.autograd.grad(scale[-1].sum(), mixed, create_graph=True)
            penalty = penalty + ((grad.norm(2, dim=1) - 1) ** 2).mean()
    return weight * penalty / len(outputs)


def time_reverse_coin(device: torch.device, rng: torch.Generator | None = None) -> Tensor:
    """The coin of `random_time_reverse`: a boolean scalar on `device`, true with probability 1/2."""
    return torch.rand((), generator=rng, device=device) < 0.5


def random_time_reverse(clips: Tensor, time_dim: int, rng: torch.Generator | None = None) -> Tensor:
    """Reverse the whole batch in time with probability 1/2 (one coin for the batch, no host sync)."""
    return torch.where(time_reverse_coin(clips.device, rng), clips.flip(time_dim), clips)



def shared_drift_loss(displacements: Tensor) -> Tensor:
    """How far the videos of a batch drift the same way: the mean over t of U_t / n, where
    U_t = mean over pairs i != j of <z_i,t, z_j,t> and z_b,t [B, T-1, n] is video b's displacement
    from frame 0 in PCA units (`Rollout.displacements`).

    Real videos are stationary: frame t has the distribution of frame 0, so the displacements average
    to zero over videos. A motion model that walks every video the same way (towards whatever the
    discriminators favour this step) breaks that, and its walk grows with the video's length. The
    videos of a batch are independent draws, so U_t is an unbiased estimate of ||E z_t||^2: a video's
    own motion costs nothing on average, however large, and no motion can earn a negative expected
    value. Needs two videos or more (the trainer refuses --w-drift with a batch of one).
    """
    batch, n = displacements.shape[0], displacements.shape[-1]
    if batch < 2 or displacements.shape[1] == 0:
        return displacements.new_zeros((), dtype=torch.float32)
    z = displacements.float()
    pairs = (z.sum(0).square().sum(-1) - z.square().sum(-1).sum(0)) / (batch * (batch - 1))
    return pairs.mean() / n


class RunningSharedDrift(torch.nn.Module):
    """The shared-drift penalty with a running estimate of the shared walk (`--drift-momentum`).

    `shared_drift_loss` pairs each video with the other videos of its batch, so the push each video
    gets is the others' own motion: zero on average, but as large as the motion itself, and it
    grows with it. Here each video is pushed against a running mean m_t of the batch means of z_t
    (an exponential average over the motion steps, bias-corrected as Adam's moments are): the loss
    is <m_t, mean_b z_b,t> / n averaged over t, its gradient w.r.t. every video is m_t / (B n), the
    walk all videos share, measured over many batches. m_t includes the current batch with weight
    1 - momentum, so a video gets back a (1 - momentum) / B share of its own motion as a push (1/80 at
    momentum 0.95 and 4 videos, against all of the others' motion with the pairs), and the value
    estimates ||E z_t||^2 / n with an upward bias of (1 - momentum) / B times the videos' own spread.
    Under torchrun the batch means are averaged over the processes first, so every process holds the
    same running mean. It is a buffer: the training state carries it, so a resumed run continues
    exactly.
    """

    def __init__(self, steps: int, n_pca: int, momentum: float):
        super().__init__()
        if not 0.0 < momentum < 1.0:
            raise ValueError(f"momentum must be in (0, 1), got {momentum}")
        self.momentum = momentum
        self.register_buffer("mean", torch.zeros(steps, n_pca))
        self.register_buffer("updates", torch.zeros((), dtype=torch.int64))

    def forward(self, displacements: Tensor) -> Tensor:
        z = displacements.float()
        batch_mean = z.mean(0)
        with torch.no_grad():
            # every process's batch mean (the identity in a single process), so all hold the same running mean
            self.mean.lerp_(gather_features(batch_mean[None]).mean(0), 1.0 - self.momentum)
            self.updates += 1
            shared = self.mean / (1.0 - self.momentum ** self.updates.float())
        return (shared * batch_mean).sum(-1).mean() / z.shape[-1]


# -- image-generator training (StyleGAN2) ---------------------------------------------------------
def d_logistic_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Discriminator: softplus(D(fake)) + softplus(-D(real)), each averaged over the batch."""
    return F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()


def g_nonsaturating_loss(fake_logits: Tensor) -> Tensor:
    """Generator: the non-saturating softplus(-D(fake)), averaged over the batch."""
    return F.softplus(-fake_logits).mean()


def r1_penalty(real_logits: Tensor, reals: Tensor) -> Tensor:
    """Mean over the batch of ||d D(x) / d x||^2 at the reals (`reals` must require grad)."""
    (grad,) = torch.autograd.grad(real_logits.sum(), reals, create_graph=True)
    return grad.square().flatten(1).sum(1).mean()
