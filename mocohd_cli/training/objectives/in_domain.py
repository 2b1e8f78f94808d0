"""In-domain training (docs/method.md, "In-domain training"): generator and videos of one domain."""
from __future__ import annotations

import torch
from torch import Tensor

from ...models.backbone import ImageGenerator
from ...models.discriminators import image_discriminator, video_discriminator
from ...models.losses import gradient_penalty, ra_lsgan_d_loss, ra_lsgan_g_loss, random_time_reverse
from ...models.motion import Rollout, mutual_information_loss
from ..config import TrainConfig
from .base import (Losses, Objective, RealSide, first_frame_pairs, frame_differences, judge, random_later_frame,
                   with_first_frame)

# (view, its channels): the release's (frame 0, frame t) clips, or the motion view (frame t - frame 0)
VIDEO_VIEWS = {"clip": (with_first_frame, 6), "motion": (frame_differences, 3)}


def fake_pairs(fake: Tensor, t: Tensor, later: Tensor | None) -> Tensor:
    """The generated (frame 0, frame t) pairs the image discriminator judges [B (+ B E), 6, S, S]: the clip's at
    the shared t, and with `later` [B, E, 3, S, S] (frames past the clip, `--image-horizon`) each of those
    beside its video's frame 0 as well. The real side stays B pairs of the clips (the losses compare each
    side with the other's mean)."""
    pairs = first_frame_pairs(fake, t)
    if later is None:
        return pairs
    first = fake[:, :1].expand(-1, later.shape[1], -1, -1, -1)
    return torch.cat([pairs, torch.cat([first, later], 2).flatten(0, 1)])


class InDomainObjective(Objective):
    """Video PatchGAN on (frame t, frame 0) clips (or frame t - frame 0) + image PatchGAN on
    (frame 0, frame t) pairs, relativistic-average LSGAN, gradient penalty on the video
    discriminator, MI loss."""

    def __init__(self, config: TrainConfig, backbone: ImageGenerator | None = None):
        super().__init__()  # (the backbone is part of the factory signature; these discriminators need nothing of it)
        widths = {"num_scales": config.d_scales, "ndf": config.d_channels, "n_layers": config.d_layers}
        self.video_view, channels = VIDEO_VIEWS[config.video_d_view]
        self.video_d = video_discriminator(channels, config.frames - 1, **widths)
        self.image_d = image_discriminator(6, **widths)
        self.gp_weight = config.gp_weight
        self.real_video = RealSide(self.video_view, time_dim=2)

    def _video_outputs(self, real: Tensor, fake: Tensor, rng: torch.Generator):
        return judge(self.video_d, self.video_view(real), self.video_view(fake), rng=rng,
                     reverse_time_dim=2)

    def _image_outputs(self, real: Tensor, fake: Tensor, rng: torch.Generator, later: Tensor | None = None):
        t = random_later_frame(real, rng)
        return judge(self.image_d, first_frame_pairs(real, t), fake_pairs(fake, t, later))

    def d_loss(self, real: Tensor, fake: Tensor, *, rng: torch.Generator, later: Tensor | None = None) -> Losses:
        fake = fake.detach()
        later = later.detach() if later is not None else None
        video = ra_lsgan_d_loss(*self._video_outputs(real, fake, rng))
        penalty = gradient_penalty(self.video_d, self.video_view(real), self.video_view(fake),
                                   weight=self.gp_weight, rng=rng)
        image = ra_lsgan_d_loss(*self._image_outputs(real, fake, rng, later))
        return {"video": video, "video_gp": penalty, "image": image}

    def g_loss(self, real: Tensor, fake: Tensor, rollout: Rollout, *, rng: torch.Generator,
               later: Tensor | None = None) -> Losses:
        # The real side is a constant here: the video D's outputs on it come once per iteration
        # (RealSide); the image pairs change with t, so they are judged apart, without autograd.
        # Either way no backward pass runs through the real half. Same draws as _video_outputs.
        video = ra_lsgan_g_loss(self.real_video.outputs(self.video_d, real, rng),
                                self.video_d(random_time_reverse(self.video_view(fake), 2, rng)))
        t = random_later_frame(real, rng)
        with torch.no_grad():
            real_pairs = self.image_d(first_frame_pairs(real, t))
        image = ra_lsgan_g_loss(real_pairs, self.image_d(fake_pairs(fake, t, later)))
        return {"video": video, "image": image, "mi": mutual_information_loss(rollout.noise, rollout.noise_pred)}


