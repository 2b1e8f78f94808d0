"""Cross-domain training (docs/method.md, "Cross-domain training"): images from domain A's
generator, motion learned from videos of domain B.

The generated frames never look like domain B, so the discriminators cannot compare real and
generated frames as in-domain training does. Instead:

- the video discriminator sees whole clips (3 channels, T frames, no frame-0 concatenation):
  it judges motion, in relativistic-average LSGAN with the gradient penalty as in-domain;
  with `video_d_view = "motion"` (not in the release) it sees each frame minus frame 0 instead
  (base.frame_differences: on whole clips it tells the domains apart by their look, and the motion
  generator can only answer by walking every video towards the other domain's colours);
- the image discriminator is contrastive (mocohd_cli.models.contrastive): its "real" images are
  augmented views of the generated frame 0, its "fake" ones augmented views of a generated
  frame t, so it learns whether content drifted from the first frame, and the motion
  generator learns to keep it.

Only the objective differs; the loop, schedule, resume, DDP and exports are the trainer's.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ...models.backbone import ImageGenerator
from ...models.contrastive import (ADAM_BETAS, ADAM_EPS, ContrastiveImageDiscriminator, discriminator_loss,
                                   generator_loss)
from ...models.discriminators import video_discriminator
from ...models.losses import gradient_penalty, ra_lsgan_d_loss, ra_lsgan_g_loss, random_time_reverse
from ...models.motion import Rollout, mutual_information_loss
from ..config import TrainConfig
from .base import (Losses, Objective, RealSide, frame_at, frame_differences, judge, random_later_frame,
                   trainable_group)


def as_video_input(clips: Tensor) -> Tensor:
    """[B, T, C, H, W] -> [B, C, T, H, W], the layout of the 3-D discriminator."""
    return clips.transpose(1, 2)


# (view, frames it drops): the release's whole clips, or the motion view
VIDEO_VIEWS = {"clip": (as_video_input, 0), "motion": (frame_differences, 1)}


class CrossDomainObjective(Objective):
    """Video PatchGAN (on whole clips, or on their motion view) + contrastive image discriminator + MI loss."""

    def __init__(self, config: TrainConfig, backbone: ImageGenerator | None = None):
        super().__init__()
        self.video_view, dropped = VIDEO_VIEWS[config.video_d_view]
        self.video_d = video_discriminator(3, config.frames - dropped, num_scales=config.d_scales,
                                           ndf=config.d_channels, n_layers=config.d_layers)
        self.image_d = ContrastiveImageDiscriminator(
            config.video_frame_size, width=config.image_d_channels, proj_dim=config.proj_dim,
            queue_size=config.queue_size, momentum=config.momentum, temperature=config.temperature,
            colour_augment=config.image_d_colour_shift)
        self.gp_weight = config.gp_weight
        self.w_match = config.w_match
        self.w_contrastive = config.w_contrastive
        self.real_video = RealSide(self.video_view, time_dim=2)

    def _video_outputs(self, real: Tensor, fake: Tensor, rng: torch.Generator):
        """Real and fake clips in the configured view, each batch randomly time-reversed, through the video D."""
        return judge(self.video_d, self.video_view(real), self.video_view(fake), rng=rng,
                     reverse_time_dim=2)

    @staticmethod
    def _first_and_random_frame(fake: Tensor, rng: torch.Generator) -> tuple[Tensor, Tensor]:
        """Generated frame 0 and one random frame t >= 1 (the same t for the batch), [B, 3, H, W] each."""
        return fake[:, 0], frame_at(fake, random_later_frame(fake, rng))

    def d_loss(self, real: Tensor, fake: Tensor, *, rng: torch.Generator) -> Losses:
        fake = fake.detach()
        video = ra_lsgan_d_loss(*self._video_outputs(real, fake, rng))
        penalty = gradient_penalty(self.video_d, self.video_view(real), self.video_view(fake),
                                   weight=self.gp_weight, rng=rng)
        frame0, frame_t = self._first_and_random_frame(fake, rng)
        image = discriminator_loss(self.image_d, frame0, frame_t, rng=rng,
                                   w_contrastive=self.w_contrastive)
        return {"video": video, "video_gp": penalty, "image_hinge": image["hinge_real"] + image["hinge_fake"],
                "image_contrastive": self.w_contrastive * (image["contrastive_real"] + image["contrastive_fake"])}

    def g_loss(self, real: Tensor, fake: Tensor, rollout: Rollout, *, rng: torch.Generator) -> Losses:
        # the real side once per iteration, without autograd (RealSide); same draws as _video_outputs
        video = ra_lsgan_g_loss(self.real_video.outputs(self.video_d, real, rng),
                                self.video_d(random_time_reverse(self.video_view(fake), 2, rng)))
        frame0, frame_t = self._first_and_random_frame(fake, rng)
        image = generator_loss(self.image_d, frame0, frame_t, rng=rng, w_match=self.w_match)
        return {"video": video, "image_hinge": image["hinge"], "image_match": self.w_match * image["match"],
                "mi": mutual_information_loss(rollout.noise, rollout.noise_pred)}

    def after_d_step(self) -> None:
        self.image_d.momentum_update()

    def optimizer_groups(self, config: TrainConfig) -> list[dict]:
        """The video discriminator with the configured betas; the contrastive image discriminator
        with its own, as in the release (models/D_img.py: betas (0.0, 0.999), eps 1e-6)."""
        return [trainable_group(self.video_d, betas=(config.beta1, config.beta2)),
                trainable_group(self.image_d, betas=ADAM_BETAS, eps=ADAM_EPS)]

