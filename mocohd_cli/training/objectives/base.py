"""What every objective shares: the `Objective` interface the trainer drives, and the frame
helpers both modes use to feed their discriminators (docs/method.md, "In-domain training" and
"Cross-domain training")."""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from ...models.losses import random_time_reverse, time_reverse_coin
from ...models.motion import Rollout
from ..config import TrainConfig

Losses = dict[str, Tensor]


class Objective(nn.Module):
    """What the motion generator trains against: the discriminators and both sides' losses.

    Each loss method returns named terms whose sum is the loss to minimise. `forward` is the
    discriminator loss so that DistributedDataParallel can wrap the whole objective; the
    trainer calls `g_loss` on the unwrapped module and back-propagates into the motion
    generator only. Extra state (queues, momentum copies) belongs in buffers or parameters
    without gradients, so `state_dict` covers it.
    """

    def d_loss(self, real: Tensor, fake: Tensor, *, rng: torch.Generator) -> Losses:
        raise NotImplementedError

    def g_loss(self, real: Tensor, fake: Tensor, rollout: Rollout, *, rng: torch.Generator) -> Losses:
        raise NotImplementedError

    def after_d_step(self) -> None:
        """Called after every discriminator update (e.g. momentum-copy updates)."""

    def optimizer_groups(self, config: TrainConfig) -> list[dict]:
        """Adam parameter groups of the discriminator update: by default every trainable parameter
        with the configured betas; an objective whose discriminators use other settings splits them."""
        return [trainable_group(self, betas=(config.beta1, config.beta2))]

    def forward(self, real: Tensor, fake: Tensor, rng: torch.Generator) -> Losses:
        return self.d_loss(real, fake, rng=rng)


def trainable_group(module: nn.Module, **settings) -> dict:
    """An optimiser parameter group of the module's parameters that take gradients."""
    return {"params": [p for p in module.parameters() if p.requires_grad], **settings}


def with_first_frame(clips: Tensor) -> Tensor:
    """[B, T, C, H, W] -> [B, 2C, T-1, H, W]: each frame t >= 1 after frame 0 on the channels."""
    first = clips[:, :1].expand(-1, clips.shape[1] - 1, -1, -1, -1)
    return torch.cat([first, clips[:, 1:]], dim=2).transpose(1, 2)


def random_later_frame(clips: Tensor, rng: torch.Generator) -> Tensor:
    """One random frame index t in 1..T-1 (a one-element tensor on the clips' device), shared by
    the whole batch; the image discriminators of both modes compare frame 0 with frame t."""
    return torch.randint(1, clips.shape[1], (1,), generator=rng, device=clips.device)


def frame_at(clips: Tensor, t: Tensor) -> Tensor:
    """[B, T, C, H, W] and a one-element index tensor -> frame t, [B, C, H, W]."""
    return clips.index_select(1, t).squeeze(1)


def first_frame_pairs(clips: Tensor, t: Tensor) -> Tensor:
    """[B, T, C, H, W] and a one-element index tensor -> [B, 2C, H, W]: (frame 0, frame t)."""
    return torch.cat([clips[:, 0], frame_at(clips, t)], dim=1)


def judge(discriminator: nn.Module, real: Tensor, fake: Tensor, *, rng: torch.Generator | None = None,
          reverse_time_dim: int | None = None) -> tuple[list[list[Tensor]], list[list[Tensor]]]:
    """(outputs on real, outputs on fake) of a multi-scale discriminator, from one pass over both
    batches (instance norm keeps samples independent, so one pass equals two). With
    `reverse_time_dim`, each batch is time-reversed with probability 1/2, independently."""
    if reverse_time_dim is not None:
        real = random_time_reverse(real, reverse_time_dim, rng)
        fake = random_time_reverse(fake, reverse_time_dim, rng)
    n = real.shape[0]
    outputs = discriminator(torch.cat([real, fake]))
    return [[o[:n] for o in scale] for scale in outputs], [[o[n:] for o in scale] for scale in outputs]


class RealSide:
    """A discriminator's outputs on the real clips for the generator steps, computed once per iteration.

    The generator loss takes them as constants, and neither the real clips nor the discriminator
    change over an iteration's g_steps; so they are computed without autograd, in both time orders
    at once, and reused until the clips, the discriminator's parameters (an optimiser step bumps
    their version counters), its train/eval mode or the autocast setting change. The same coin as
    `random_time_reverse`'s is drawn from `rng` each time, so the random stream stays the same.
    Per sample the outputs equal those of one pass over real and fake together (instance norm keeps
    samples independent; bit-identical on the CPU, tests/test_objectives.py). Only each scale's
    last output is kept: the losses read nothing else.
    """

    def __init__(self, prepare: Callable[[Tensor], Tensor], time_dim: int):
        self.prepare, self.time_dim = prepare, time_dim
        self._cached: tuple | None = None

    def outputs(self, discriminator: nn.Module, real: Tensor, rng: torch.Generator) -> list[list[Tensor]]:
        """[[last output]] per scale on `prepare(real)`, time-reversed with probability 1/2."""
        flip = time_reverse_coin(real.device, rng)
        forward, backward = self._both(discriminator, real)
        return [[torch.where(flip, b, f)] for f, b in zip(forward, backward)]

    def _both(self, discriminator: nn.Module, real: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        kind = real.device.type
        autocast = torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else None
        key = (real._version, discriminator.training, autocast, tuple(p._version for p in discriminator.parameters()))
        cached = self._cached
        if cached is None or cached[0] is not real or cached[1] != key:
            x = self.prepare(real)
            with torch.no_grad():
                last = [scale[-1] for scale in discriminator(torch.cat([x, x.flip(self.time_dim)]))]
            n = x.shape[0]
            # holding `real` keeps its memory from being reused by another batch while cached
            cached = self._cached = (real, key, ([o[:n] for o in last], [o[n:] for o in last]))
        return cached[2]

