"""The latent motion discriminator (`--w-latent-motion`, mocohd_cli/models/latent_prior.py): it tells the
generated clips' walks in the latent space from those of the training videos projected into the backbone."""
from __future__ import annotations

import torch
from torch import Tensor

from ...models.latent_prior import LatentMotionDiscriminator, clip_bank
from ...models.losses import ra_lsgan_d_loss, ra_lsgan_g_loss
from ...models.motion import MotionGenerator
from .base import Losses, Step, Term, TermContext


def clips_in_basis(latents: Tensor, frames: int, motion: MotionGenerator) -> Tensor:
    """Every clip of `frames` latents of the projected videos [N, F, D] as displacements from its first frame in
    the motion model's PCA units [M, frames-1, n], on the model's device."""
    return clip_bank(latents, frames, motion.pca_components.cpu(), motion.pca_stdev.cpu()).to(
        motion.pca_components.device)


def draw_clips(bank: Tensor, batch: int, rng: torch.Generator) -> Tensor:
    """`batch` clips of a bank, drawn from the step's random stream (on the stream's device: a CPU stream
    would repeat the device stream's draws, both having the same seed)."""
    index = torch.randint(0, bank.shape[0], (batch,), generator=rng, device=rng.device)
    return bank[index.to(bank.device)]


class LatentMotion(Term):
    name = "latent_motion"

    def __init__(self, context: TermContext):
        config = context.config
        self.weight, self.frames, self.context = config.w_latent_motion, config.frames, context
        self.discriminator = LatentMotionDiscriminator(config.frames - 1, config.n_pca).to(context.device)
        self.optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=config.lr,
                                          betas=(config.beta1, config.beta2))
        self.bank: Tensor | None = None  # the projected clips' displacements in the motion model's units
        self.net = self.discriminator

    @classmethod
    def build(cls, context: TermContext) -> "LatentMotion | None":
        return cls(context) if context.config.w_latent_motion else None

    def setup(self, motion: MotionGenerator) -> None:
        self.bank = clips_in_basis(self.context.projected(), self.frames, motion)
        self.net = self.context.distribute(self.discriminator)

    def _fake(self, step: Step) -> Tensor:
        return step.rollout.displacements[:, :self.frames - 1]

    def g_loss(self, step: Step) -> Losses:
        with torch.no_grad():
            real_scores = self.discriminator(draw_clips(self.bank, step.real.shape[0], step.rng))
        return {"latent": self.weight * ra_lsgan_g_loss(real_scores, self.discriminator(self._fake(step)))}

    def d_update(self, step: Step) -> Losses:
        # one pass over real and generated clips together (the MLP treats samples apart), so that the
        # DDP wrapper under torchrun sees one forward per backward
        n = step.real.shape[0]
        scores = self.net(torch.cat([draw_clips(self.bank, n, step.rng), self._fake(step)]))[0][0]
        loss = ra_lsgan_d_loss([[scores[:n]]], [[scores[n:]]])
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"latent": loss.detach()}

    def has_state(self) -> bool:
        return True

    def state_dict(self) -> dict:
        return {"discriminator": self.discriminator.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.discriminator.load_state_dict(state["discriminator"])
        self.optimizer.load_state_dict(state["optimizer"])
