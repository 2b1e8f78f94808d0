"""What each discriminator of the in-domain objective is shown: frame 0 beside frame t, in that order."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from mocohd_cli.training import TrainConfig
from mocohd_cli.training.objectives import InDomainObjective

C, T = 3, 5


class Recorder(nn.Module):
    """Stands in for a multi-scale discriminator: records its inputs, returns one differentiable
    output per scale in the discriminators' format ([[last layer output]])."""

    def __init__(self):
        super().__init__()
        self.inputs: list[torch.Tensor] = []

    def forward(self, x):
        self.inputs.append(x.detach())
        return [[x.sum(dim=1, keepdim=True)]]


def clips_with_numbered_frames(batch: int) -> torch.Tensor:
    """[B, T, C, H, W] whose frame k is filled with k (and video b offset by 10 b)."""
    frames = torch.arange(T, dtype=torch.float32).view(1, T, 1, 1, 1)
    videos = 10 * torch.arange(batch, dtype=torch.float32).view(batch, 1, 1, 1, 1)
    return (frames + videos).expand(batch, T, C, 4, 4).clone()


@pytest.fixture
def objective():
    objective = InDomainObjective(TrainConfig(frames=T, d_channels=4))
    objective.video_d, objective.image_d = Recorder(), Recorder()
    return objective


def frame_numbers(x: torch.Tensor, batch: int) -> torch.Tensor:
    """Per video, the frame number a constant block holds (undoing the per-video offset)."""
    offsets = 10 * torch.arange(batch, dtype=torch.float32).view(batch, *([1] * (x.dim() - 1)))
    return x - offsets


def test_video_discriminator_sees_frame_zero_then_frame_t(objective):
    real, fake = clips_with_numbered_frames(2), clips_with_numbered_frames(2)
    objective.d_loss(real, fake, rng=torch.Generator().manual_seed(0))
    judged = objective.video_d.inputs[0]  # [2B, 2C, T-1, H, W]: real batch then fake batch
    assert judged.shape == (4, 2 * C, T - 1, 4, 4)
    for half in (judged[:2], judged[2:]):
        numbers = frame_numbers(half, 2)
        assert torch.all(numbers[:, :C] == 0), "the first C channels must hold frame 0"
        later = numbers[:, C:, :, 0, 0]  # [B, C, T-1]: which frame sits at each position
        order = later[0, 0]
        assert torch.all(later == order.view(1, 1, -1))
        # frames 1..T-1, in order or (time reversal) reversed
        assert order.tolist() in (list(range(1, T)), list(range(T - 1, 0, -1)))


def test_image_discriminator_sees_frame_zero_then_one_later_frame(objective):
    real, fake = clips_with_numbered_frames(3), clips_with_numbered_frames(3)
    objective.d_loss(real, fake, rng=torch.Generator().manual_seed(1))
    pairs = objective.image_d.inputs[0]  # [2B, 2C, H, W]
    numbers = torch.cat([frame_numbers(pairs[:3], 3), frame_numbers(pairs[3:], 3)])
    assert torch.all(numbers[:, :C] == 0), "the first C channels must hold frame 0"
    t = numbers[:, C:]
    assert torch.all(t == t.flatten()[0]) and 1 <= t.flatten()[0] <= T - 1  # one frame t >= 1, shared


def test_generator_side_shows_the_same_pairs(objective):
    from mocohd_cli.models.motion import Rollout

    real, fake = clips_with_numbered_frames(2), clips_with_numbered_frames(2).requires_grad_(True)
    noise = torch.randn(2, T - 1, 4)
    objective.g_loss(real, fake, Rollout(latents=None, noise=noise, noise_pred=noise.clone()),
                     rng=torch.Generator().manual_seed(2))
    assert torch.all(frame_numbers(objective.video_d.inputs[0][2:], 2)[:, :C] == 0)
    assert torch.all(frame_numbers(objective.image_d.inputs[0][2:], 2)[:, :C] == 0)
