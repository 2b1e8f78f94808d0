"""The latent phase: the motion generator trained on the training videos' projected walks, latents only
(issue 35; docs/method.md, "Additions", "Latent phase").

The rendering trainer synthesises every frame it judges, 0.7 iterations per second on 2 cores. This phase
renders nothing. The training videos projected into the backbone frame by frame ([N, F, D], the latent motion
discriminator's projections) give windows of L consecutive latents; each window is a start w_s and that
video's walk from it, z = (w_{s+t} - w_s) P^T / s in the motion model's PCA units. Per step:

  1. B windows drawn at random (video and start frame) from `projected`;
  2. the motion generator rolled out K times from each window's own start w_s, L frames (H with the
     long-walk term: past the window each walk's displacement from w_s at a random frame is compared with
     the projected displacements by the energy distance, `w_horizon`);
  3. the conditional energy score of the K walks against the video's walk (`w_score`), the MI loss (`w_mi`),
     and, with `w_adversarial`, a matching-aware conditional discriminator D(c(w_s), walk) (one D update per
     step, then the generator's LSGAN loss) (mocohd_cli/models/trajectory.py);
  4. one Adam step of the motion generator.

The motion learned this way is the data's motion *for the data's starts*: the LSTM reads w_s through its
encoder cell, as it reads w_0 when sampling. Sampled content codes lie elsewhere in W than the projected
starts, which is what the rendered phase that follows (the paper's discriminators on sampled content) is for.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import torch
from torch import Tensor, nn

from ..models.latent_prior import displacements_in_pca_units
from ..models.motion import MotionGenerator, mutual_information_loss
from ..models.walk_matching import energy_distance
from ..models.trajectory import (ConditionalTrajectoryDiscriminator, ContentWhitener, energy_score, matching_d_loss,
                                 matching_g_loss, shuffled)


@dataclass
class LatentPhaseSettings:
    """The latent phase's knobs (defaults: what measured best on the faces example, docs/motion_control.md)."""

    iterations: int = 2000     # optimiser steps
    lr: float = 1e-3           # Adam, the motion generator (and the discriminator)
    batch: int = 32            # windows per step
    samples: int = 4           # walks the model makes from each window's start (K >= 2)
    frames: int = 16           # window length L (frames, start included); at most the projections' length
    w_score: float = 1.0       # conditional energy score
    w_mi: float = 1.0          # mutual-information loss (the release's, on the phase's rollouts)
    w_adversarial: float = 0.0  # matching-aware conditional trajectory discriminator (0: none)
    # frames the walks are unrolled to (the long-walk term covers frames `frames`..): 32 holds the faces example
    # together over 64 frames, at 10 steps/s on one core (64: 2.6 steps/s with 8 samples)
    horizon: int = 32
    w_horizon: float = 1.0     # long-walk term: displacements past the window against the projected ones
    d_width: int = 512
    content_dim: int = 64      # whitened directions of the start the discriminator reads

    def __post_init__(self) -> None:
        if self.samples < 2:
            raise ValueError("the latent phase needs at least 2 walks per start (samples >= 2)")
        if self.frames < 2 or self.batch < 1 or self.iterations < 0 or self.lr <= 0:
            raise ValueError(f"bad latent phase settings: {self}")

    def to_dict(self) -> dict:
        return asdict(self)



LATENT_PHASE = LatentPhaseSettings()  # the defaults, read by the training config's latent_* options


class LatentPhase:
    """One optimiser step per `step` call, latents only. The motion generator's weights are its owner's to
    save; `state_dict` holds the phase's own state (optimisers, discriminator, step)."""

    def __init__(self, motion: MotionGenerator, projected: Tensor, settings: LatentPhaseSettings,
                 device: torch.device | str = "cpu", *, rollout: Callable | None = None,
                 wrap: Callable[[nn.Module], nn.Module] = lambda module: module):
        """`rollout(w0, n_frames, rng)` rolls the motion generator out (default `motion.rollout`; the
        trainer passes its DistributedDataParallel wrapper, so the ranks' gradients are averaged), and `wrap`
        wraps the phase's discriminator the same way."""
        if projected.dim() != 3 or projected.shape[2] != motion.latent_dim:
            raise ValueError(f"projected videos must be [N, F, {motion.latent_dim}], got {tuple(projected.shape)}")
        if settings.frames > projected.shape[1]:
            raise ValueError(f"windows of {settings.frames} frames do not fit projected videos of "
                             f"{projected.shape[1]} frames")
        self.motion, self.settings, self.device = motion, settings, torch.device(device)
        self.rollout = rollout or (lambda w0, n_frames, rng: motion.rollout(w0, n_frames, rng=rng))
        self.projected = projected.float().to(self.device)
        self.step_count = 0
        self._data_displacements: Tensor | None = None  # the long-walk term's data, made at its first step
        self.opt = torch.optim.Adam(motion.parameters(), lr=settings.lr, betas=(0.5, 0.999))
        self.discriminator = self.opt_d = self.whitener = None
        if settings.w_adversarial:
            self.whitener = ContentWhitener(self.projected[:, : projected.shape[1] - settings.frames + 1],
                                            settings.content_dim).to(self.device)
            self.discriminator = ConditionalTrajectoryDiscriminator(
                self.whitener.dim, settings.frames - 1, motion.n_pca, settings.d_width).to(self.device)
            self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=settings.lr, betas=(0.5, 0.999))
            self.judge = wrap(self.discriminator)

    # -- data ------------------------------------------------------------------------------------
    def windows(self, count: int, rng: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        """`count` windows: (video index [B], starts w_s [B, D], the videos' walks [B, L-1, n] in PCA units)."""
        length = self.settings.frames
        n, f = self.projected.shape[:2]
        video = torch.randint(0, n, (count,), generator=rng, device=rng.device).to(self.device)
        start = torch.randint(0, f - length + 1, (count,), generator=rng, device=rng.device).to(self.device)
        frame = start[:, None] + torch.arange(length, device=self.device)
        clips = self.projected[video[:, None], frame]                                   # [B, L, D]
        walks = displacements_in_pca_units(clips, self.motion.pca_components, self.motion.pca_stdev)
        return video, clips[:, 0], walks

    # -- one step --------------------------------------------------------------------------------
    def step(self, rng: torch.Generator) -> dict[str, Tensor]:
        s, motion = self.settings, self.motion
        motion.train()
        video, starts, real = self.windows(s.batch, rng)
        unrolled = max(s.frames, s.horizon) if s.w_horizon else s.frames
        rollout = self.rollout(starts.repeat_interleave(s.samples, 0), unrolled, rng)
        fake = rollout.displacements[:, : s.frames - 1].reshape(s.batch, s.samples, s.frames - 1, motion.n_pca)
        losses: dict[str, Tensor] = {}
        if s.w_score:
            losses["score"] = s.w_score * energy_score(fake, real)
        if unrolled > s.frames:
            losses["horizon"] = s.w_horizon * self.long_walk_loss(rollout.displacements, rng)
        if s.w_mi:
            losses["mi"] = s.w_mi * mutual_information_loss(rollout.noise, rollout.noise_pred)
        if self.discriminator is not None:
            content = self.whitener(starts)
            generated = fake[:, 0]
            other = shuffled(torch.arange(s.batch, device=self.device), rng)
            # one forward pass of the (possibly DistributedDataParallel) judge over the three kinds of pair
            scores = self.judge(content.repeat(3, 1), torch.cat([real, generated.detach(), real[other]]))
            d_loss = matching_d_loss(*scores.chunk(3))
            self.opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            self.opt_d.step()
            # the generator's loss through the plain module: only the motion generator's gradients are wanted
            losses["adversarial"] = s.w_adversarial * matching_g_loss(self.discriminator(content, generated))
        total = sum(losses.values())
        self.opt.zero_grad(set_to_none=True)
        total.backward(inputs=list(motion.parameters()))
        self.opt.step()
        self.step_count += 1
        out = {k: v.detach() for k, v in losses.items()}
        if self.discriminator is not None:
            out["d"] = d_loss.detach()
        return out

    def long_walk_loss(self, displacements: Tensor, rng: torch.Generator) -> Tensor:
        """Energy distance between each walk's displacement from its start at one random frame past the window
        ([frames, horizon)) and as many displacements of the projected videos at random frames: the data's
        walks stay near where they start (real videos are stationary), so walks past the learned window must
        not wander off (they did: faces dissolved by frame 32 without it)."""
        walks, steps = displacements.shape[:2]
        # every projected frame's displacement from its video's frame 0 [N (F-1), n], made at the first step: a
        # resumed run loads its basis after the phase is built, and the basis is fixed from then on
        if self._data_displacements is None:
            self._data_displacements = displacements_in_pca_units(
                self.projected, self.motion.pca_components, self.motion.pca_stdev).reshape(-1, self.motion.n_pca)
        data = self._data_displacements
        late = torch.randint(self.settings.frames - 1, steps, (walks,), generator=rng, device=rng.device)
        rows = torch.randint(0, data.shape[0], (walks,), generator=rng, device=rng.device)
        generated = displacements[torch.arange(walks, device=displacements.device), late.to(displacements.device)]
        return energy_distance(generated, data[rows.to(self.device)])

    # -- state -----------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        state = {"step": self.step_count, "settings": self.settings.to_dict(), "opt": self.opt.state_dict()}
        if self.discriminator is not None:
            state.update(discriminator=self.discriminator.state_dict(), opt_d=self.opt_d.state_dict(),
                         whitener=self.whitener.state_dict())
        return state

    def load_state_dict(self, state: dict) -> None:
        self.step_count = int(state["step"])
        self.opt.load_state_dict(state["opt"])
        if self.discriminator is not None:
            self.whitener.load_state_dict(state["whitener"])
            self.discriminator.load_state_dict(state["discriminator"])
            self.opt_d.load_state_dict(state["opt_d"])

    @property
    def done(self) -> bool:
        return self.step_count >= self.settings.iterations
