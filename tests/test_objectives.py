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
    # the last pass of each discriminator is the generated batch's (the real side is judged apart)
    assert objective.video_d.inputs[-1].shape == (2, 2 * C, T - 1, 4, 4)
    assert torch.all(frame_numbers(objective.video_d.inputs[-1], 2)[:, :C] == 0)
    assert torch.all(frame_numbers(objective.image_d.inputs[-1], 2)[:, :C] == 0)


def reference_g_losses(objective, real, fake, rng):
    """The adversarial generator terms as they were computed before the real side was shared:
    one pass over real and fake together, every step."""
    from mocohd_cli.models.losses import ra_lsgan_g_loss

    losses = {"video": ra_lsgan_g_loss(*objective._video_outputs(real, fake, rng))}
    if isinstance(objective, InDomainObjective):
        losses["image"] = ra_lsgan_g_loss(*objective._image_outputs(real, fake, rng))
    return losses


@pytest.mark.parametrize("mode", ["in-domain", "cross-domain"])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_real_side_computed_once_per_iteration_gives_the_same_losses(mode, precision):
    from mocohd_cli.models.motion import Rollout
    from mocohd_cli.training.objectives import objective_for

    torch.manual_seed(0)
    frames, size = 6, 32
    config = TrainConfig(frames=frames, d_channels=4, image_d_channels=4, video_frame_size=size, queue_size=8,
                         mode=mode)
    objective = objective_for(mode)(config, None)
    optimiser = torch.optim.Adam(objective.parameters(), lr=0.05)
    noise = torch.randn(2, frames - 1, 4)
    rollout = Rollout(latents=None, noise=noise, noise_pred=noise.clone())
    real_batches = []
    objective.video_d.register_forward_pre_hook(lambda _module, args: real_batches.append(args[0].shape[0]))
    real = torch.rand(2, frames, C, size, size) * 2 - 1
    for iteration in range(3):
        if iteration == 2:
            real = real.clone()  # a new batch (even with the same values) is judged anew
        for step in range(3):
            fake = (torch.rand(2, frames, C, size, size) * 2 - 1).requires_grad_(True)
            seed = 10 * iteration + step
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                real_batches.clear()
                shared = objective.g_loss(real, fake, rollout, rng=torch.Generator().manual_seed(seed))
                passes = list(real_batches)
                reference = reference_g_losses(objective, real, fake, torch.Generator().manual_seed(seed))
            # the real clips in both time orders on the first step of an iteration, then only the fakes
            assert passes == ([4, 2] if step == 0 else [2])
            for name, value in reference.items():
                assert torch.equal(shared[name], value), name
                (g_shared,) = torch.autograd.grad(shared[name], fake, retain_graph=True)
                (g_reference,) = torch.autograd.grad(value, fake)
                assert torch.equal(g_shared, g_reference), name
        # the discriminator update: the next iteration's real side must be computed again
        losses = objective.d_loss(real, fake.detach(), rng=torch.Generator().manual_seed(iteration))
        optimiser.zero_grad()
        sum(losses.values()).backward()
        optimiser.step()


def motion_view_objective(mode: str):
    from mocohd_cli.training.objectives import objective_for

    config = TrainConfig(frames=T, d_channels=4, image_d_channels=4, video_frame_size=32, queue_size=8,
                         mode=mode, video_d_view="motion")
    objective = objective_for(mode)(config, None)
    objective.video_d = Recorder()
    return objective


@pytest.mark.parametrize("mode", ["cross-domain", "in-domain"])
def test_motion_view_shows_frames_minus_frame_zero(mode):
    objective = motion_view_objective(mode)
    real = clips_with_numbered_frames(2).repeat(1, 1, 1, 8, 8)  # 32 px, as the image discriminator needs
    fake = real.clone()
    fake[:, 1:] += 0.5  # every later frame's colour moved by the same amount: a drift
    objective.d_loss(real, fake, rng=torch.Generator().manual_seed(0))
    judged = objective.video_d.inputs[0]  # [2B, C, T-1, H, W]: real batch then fake batch
    assert judged.shape == (4, C, T - 1, 32, 32)
    # the look of each video (its offset 10 b) cancels: what is left is how far frame t moved from frame 0
    lags = judged[:2, 0, :, 0, 0]
    for row in lags:
        assert row.tolist() in (list(range(1, T)), list(range(T - 1, 0, -1)))  # or time-reversed
    assert torch.equal(judged[2:].sort(dim=2).values, judged[:2].sort(dim=2).values + 0.5)  # the drift shows


def test_in_domain_motion_view_trains_a_three_channel_discriminator():
    from mocohd_cli.training.objectives import objective_for

    # in-domain, "clip" puts frame 0 beside every frame (6 channels); the motion view has 3
    clip, motion = (objective_for("in-domain")(TrainConfig(frames=T, d_channels=4, video_d_view=view), None)
                    for view in ("clip", "motion"))
    clips = torch.rand(2, T, C, 32, 32) * 2 - 1
    for objective in (clip, motion):
        losses = objective.d_loss(clips, clips.flip(1), rng=torch.Generator().manual_seed(0))
        assert all(torch.isfinite(v) for v in losses.values())
        sum(losses.values()).backward()
        assert all(p.grad is not None for p in objective.video_d.parameters())
    first_conv = [m for m in motion.video_d.modules() if isinstance(m, torch.nn.Conv3d)][0]
    assert first_conv.in_channels == C
    assert [m for m in clip.video_d.modules() if isinstance(m, torch.nn.Conv3d)][0].in_channels == 2 * C


def test_cross_domain_motion_view_trains_a_discriminator_of_t_minus_one_frames():
    from mocohd_cli.infra.errors import MocohdError
    from mocohd_cli.training.config import RESUME_KEYS
    from mocohd_cli.training.objectives import objective_for

    with pytest.raises(MocohdError, match="video-d-view"):
        TrainConfig(mode="cross-domain", video_d_view="frames").validate()
    assert "video_d_view" in RESUME_KEYS  # a discriminator trained on one view must not be fed the other
    from pathlib import Path

    from mocohd_cli.training.resume import check_compatible

    # a state written before the view existed was trained on whole clips: resuming it with the motion view is refused
    with pytest.raises(MocohdError, match="video_d_view was 'clip'"):
        check_compatible({"mode": "cross-domain"}, TrainConfig(mode="cross-domain", video_d_view="motion"),
                         Path("state/latest.pt"))
    check_compatible({"mode": "cross-domain"}, TrainConfig(mode="cross-domain"), Path("state/latest.pt"))
    config = TrainConfig(frames=T, d_channels=4, image_d_channels=4, video_frame_size=32, queue_size=8,
                         mode="cross-domain", video_d_view="motion")
    objective = objective_for("cross-domain")(config, None)
    clips = torch.rand(2, T, C, 32, 32) * 2 - 1
    losses = objective.d_loss(clips, clips.flip(1), rng=torch.Generator().manual_seed(0))
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert all(p.grad is not None for p in objective.video_d.parameters())


def test_cross_domain_image_discriminator_sees_colour_when_its_colour_shift_is_off():
    from mocohd_cli.models import contrastive
    from mocohd_cli.models.motion import Rollout
    from mocohd_cli.training.objectives import objective_for

    seen = []

    def recording(images, **kwargs):
        seen.append(kwargs["colour"])
        return images

    config = TrainConfig(frames=T, d_channels=4, image_d_channels=4, video_frame_size=32, queue_size=8,
                         mode="cross-domain", image_d_colour_shift=False)
    objective = objective_for("cross-domain")(config, None)
    assert objective.image_d.colour_augment is False
    assert objective_for("cross-domain")(TrainConfig(**{**config.__dict__, "image_d_colour_shift": True}),
                                         None).image_d.colour_augment is True  # the release's default
    clips = torch.rand(2, T, C, 32, 32) * 2 - 1
    rng = torch.Generator().manual_seed(0)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(contrastive, "augment", recording)
        patch.setattr(contrastive, "two_views", lambda images, rng, **kw: (recording(images, **kw),) * 2)
        objective.d_loss(clips, clips.flip(1), rng=rng)
        noise = torch.randn(2, T - 1, 4)
        objective.g_loss(clips, clips.flip(1), Rollout(latents=None, noise=noise, noise_pred=noise.clone()), rng=rng)
    assert seen and not any(seen)  # every view, in the D step and the G step, without colour shifts
