"""The contrastive image discriminator of cross-domain training (docs/method.md, "Cross-domain
training").

In cross-domain training the generated frames never look like the real videos, so the
image discriminator does not compare real and generated images: its "real" images are
augmented views of a generated frame 0 and its "fake" images augmented views of a generated
frame t. It learns whether the content drifted away from the first frame.

Pieces, assembled by a training objective:

- ``ResidualDiscriminator``: the release's BigGAN discriminator (channel table
  ``DISCRIMINATOR_ARCH``) with a hinge logit and a projection head.
- ``ContrastiveImageDiscriminator``: the online network, its momentum (EMA) copy and two
  feature queues ("real" and "fake"); all of it is in ``state_dict``.
- ``discriminator_loss`` / ``generator_loss``: the losses of one D step / one G step.
  ``disc.momentum_update()`` must be called after each D optimiser step.
- ``ADAM_BETAS`` / ``ADAM_EPS``: the release's Adam settings for this discriminator.

Under torch.distributed every rank must call ``generator_loss`` (or ``enqueue``) the same
number of times with the same batch size: the queued features are all-gathered so that the
queues stay identical on all ranks. The loss functions accept the discriminator itself or a
DistributedDataParallel wrapper of it (the forward then goes through the wrapper, so the
online network's gradients are averaged across ranks).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

from ..infra.errors import MocohdError
from .augment import augment, two_views

__all__ = [
    "ADAM_BETAS",
    "ADAM_EPS",
    "DISCRIMINATOR_ARCH",
    "ContrastiveImageDiscriminator",
    "ResidualDiscriminator",
    "block_channels",
    "contrastive_loss",
    "discriminator_loss",
    "gather_features",
    "generator_loss",
    "hinge_d_loss",
    "hinge_g_loss",
]

# The release optimises this discriminator with Adam(betas=(0.0, 0.999), eps=1e-6): the
# defaults D_B1, D_B2, adam_eps of ModelD_img in models/D_img.py, not the (0.5, 0.999) and
# eps 1e-8 of its other networks. Only the online network is optimised.
ADAM_BETAS = (0.0, 0.999)
ADAM_EPS = 1e-6


class BlockLayout(NamedTuple):
    """Channel multipliers of the blocks, in units of the base width, and which blocks halve
    the resolution. ``in_mult[0]`` is None: block 0 takes the image channels."""
    in_mult: tuple
    out_mult: tuple
    downsample: tuple


# The release's fixed channel table (models/BigGAN/BigGAN_D.py, D_arch), by frame size.
# It has no other resolutions. Block i > 0 takes in_mult[i] = out_mult[i - 1].
DISCRIMINATOR_ARCH: dict[int, BlockLayout] = {
    256: BlockLayout((None, 1, 2, 4, 8, 8, 16), (1, 2, 4, 8, 8, 16, 16), (True,) * 6 + (False,)),
    128: BlockLayout((None, 1, 2, 4, 8, 16), (1, 2, 4, 8, 16, 16), (True,) * 5 + (False,)),
    64: BlockLayout((None, 1, 2, 4, 8), (1, 2, 4, 8, 16), (True,) * 4 + (False,)),
    32: BlockLayout((None, 4, 4, 4), (4, 4, 4, 4), (True, True, False, False)),
}


def block_channels(resolution: int, width: int, in_channels: int = 3) -> list[tuple[int, int, bool]]:
    """(in channels, out channels, downsample) of each block at this frame size."""
    layout = DISCRIMINATOR_ARCH.get(resolution)
    if layout is None:
        sizes = ", ".join(str(r) for r in sorted(DISCRIMINATOR_ARCH))
        raise MocohdError(
            f"the contrastive image discriminator has no layout for {resolution} px frames; "
            f"the authors' release defines it for {sizes} px only",
            fix=f"use --video-frame-size with one of {sizes} (128 as released)")
    return [(in_channels if m_in is None else width * m_in, width * m_out, down)
            for m_in, m_out, down in zip(*layout)]


def _sn(layer: nn.Module) -> nn.Module:
    """Orthogonal init (as the release's BigGAN D), then spectral normalisation."""
    nn.init.orthogonal_(layer.weight)
    return spectral_norm(layer)


class _DownBlock(nn.Module):
    """Residual block (release: models/BigGAN/BigGAN_D.py, DBlock):
    [ReLU] conv3x3 -> ReLU -> conv3x3 [-> avgpool 2], plus a shortcut that is a 1x1 conv
    when the channels change or the block downsamples, else the identity.

    The first block of the network sees raw pixels and skips the leading ReLU; its shortcut
    pools before the 1x1 conv, the others convolve first (BigGAN's order).
    """

    def __init__(self, in_channels: int, out_channels: int, *, downsample: bool, preactivation: bool):
        super().__init__()
        self.preactivation = preactivation
        self.downsample = downsample
        self.conv1 = _sn(nn.Conv2d(in_channels, out_channels, 3, padding=1))
        self.conv2 = _sn(nn.Conv2d(out_channels, out_channels, 3, padding=1))
        self.shortcut_conv = (_sn(nn.Conv2d(in_channels, out_channels, 1))
                              if in_channels != out_channels or downsample else None)

    def _pool(self, x: Tensor) -> Tensor:
        return F.avg_pool2d(x, 2) if self.downsample else x

    def _shortcut(self, x: Tensor) -> Tensor:
        if self.shortcut_conv is None:
            return x
        if self.preactivation:
            return self._pool(self.shortcut_conv(x))
        return self.shortcut_conv(self._pool(x))

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu(x) if self.preactivation else x
        h = self.conv2(F.relu(self.conv1(h)))
        return self._pool(h) + self._shortcut(x)


class ResidualDiscriminator(nn.Module):
    """The release's BigGAN discriminator (models/BigGAN/BigGAN_D.py): spectral-normalised
    residual blocks with the channels of ``DISCRIMINATOR_ARCH`` (in units of ``width``, 96 as
    released), ReLU, sum pooling, then ``proj0`` shared by the hinge logit (``linear``) and
    the projection MLP (``proj1`` -> ReLU -> ``proj2``). No attention.

    ``forward(x [N, C, R, R]) -> (logits [N], projections [N, proj_dim])`` (not normalised).
    Raises MocohdError for a resolution the table does not have.
    """

    def __init__(self, resolution: int, *, width: int = 96, proj_dim: int = 256, in_channels: int = 3):
        super().__init__()
        channels = block_channels(resolution, width, in_channels)
        self.resolution = resolution
        self.proj_dim = proj_dim
        self.blocks = nn.Sequential(*(
            _DownBlock(c_in, c_out, downsample=down, preactivation=i > 0)
            for i, (c_in, c_out, down) in enumerate(channels)))
        self.proj0 = _sn(nn.Linear(channels[-1][1], proj_dim))
        self.linear = _sn(nn.Linear(proj_dim, 1))
        self.proj1 = _sn(nn.Linear(proj_dim, proj_dim))
        self.proj2 = _sn(nn.Linear(proj_dim, proj_dim))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if x.dim() != 4 or x.shape[-2:] != (self.resolution, self.resolution):
            raise ValueError(f"expected images [N, C, {self.resolution}, {self.resolution}], "
                             f"got shape {tuple(x.shape)}")
        h = torch.sum(F.relu(self.blocks(x)), dim=(2, 3))
        h = F.relu(self.proj0(h))
        return self.linear(h).squeeze(1), self.proj2(F.relu(self.proj1(h)))


def gather_features(features: Tensor) -> Tensor:
    """Concatenate ``features`` of all ranks (rank order) along dim 0; the identity when
    torch.distributed is not initialised or has one process. No gradient flows through it.
    Every rank must pass the same shape."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return features
    features = features.detach().contiguous()
    parts = [torch.empty_like(features) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, features)
    return torch.cat(parts, dim=0)


class ContrastiveImageDiscriminator(nn.Module):
    """Online discriminator + momentum copy + "real"/"fake" feature queues (MoCo style).

    ``forward(x) -> (logits [N], features [N, proj_dim] L2-normalised)`` with the online
    network. Optimise ``disc.online.parameters()`` (with ``ADAM_BETAS``, ``ADAM_EPS``); the
    momentum copy never gets gradients and follows the online network through
    ``momentum_update()`` (call it after each D step). The queues hold L2-normalised
    momentum-copy features, start as random unit vectors, and are filled through ``enqueue``
    (``generator_loss`` does it).

    As in the release (models/D_img.py) the momentum copy shares only the parameters with the
    online network: its spectral-norm vectors u/v are its own (drawn from the torch RNG when
    it is built, never copied or averaged), and it stays in train mode like the rest, so each
    of its forwards runs one power iteration on its own weights.
    """

    def __init__(self, resolution: int, *, width: int = 96, proj_dim: int = 256,
                 queue_size: int = 4096, momentum: float = 0.999, temperature: float = 0.07,
                 in_channels: int = 3, colour_augment: bool = True):
        super().__init__()
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must lie in [0, 1], got {momentum}")
        if queue_size < 1 or temperature <= 0:
            raise ValueError("queue_size must be >= 1 and temperature > 0")
        self.momentum = momentum
        self.temperature = temperature
        # False (not in the release): no colour shift among the augmentations, so the features,
        # and the frame-t / frame-0 match the motion generator is trained with, see colour.
        self.colour_augment = colour_augment
        options = dict(width=width, proj_dim=proj_dim, in_channels=in_channels)
        self.online = ResidualDiscriminator(resolution, **options)
        # Built on its own, as the release does, so its u/v come from its own construction;
        # then only parameters() are copied (models/D_img.py, ModelD_img.__init__).
        self.momentum_copy = ResidualDiscriminator(resolution, **options)
        with torch.no_grad():
            for held, online in zip(self.momentum_copy.parameters(), self.online.parameters()):
                held.copy_(online)
        self.momentum_copy.requires_grad_(False)
        self.register_buffer("queue_real", F.normalize(torch.randn(queue_size, proj_dim), dim=1))
        self.register_buffer("queue_fake", F.normalize(torch.randn(queue_size, proj_dim), dim=1))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    @property
    def queue_size(self) -> int:
        return self.queue_real.shape[0]

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        logits, projections = self.online(x)
        return logits, F.normalize(projections, dim=1)

    @torch.no_grad()
    def momentum_features(self, x: Tensor) -> Tensor:
        """L2-normalised projections of the momentum copy (no gradient). In train mode this
        also advances the copy's own spectral-norm power iteration, as in the release."""
        return F.normalize(self.momentum_copy(x)[1], dim=1)

    @torch.no_grad()
    def momentum_update(self) -> None:
        """copy <- momentum * copy + (1 - momentum) * online, for every parameter. Buffers
        (the spectral-norm u/v) are left alone, as in the release's _momentum_update_dis."""
        for held, online in zip(self.momentum_copy.parameters(), self.online.parameters()):
            held.mul_(self.momentum).add_(online.detach(), alpha=1.0 - self.momentum)

    @torch.no_grad()
    def enqueue(self, real: Tensor, fake: Tensor) -> None:
        """Write features [B, proj_dim] of all ranks into the queues at the shared pointer,
        wrapping around; the oldest entries are overwritten."""
        if real.shape != fake.shape:
            raise ValueError(f"real and fake features differ in shape: {tuple(real.shape)} vs {tuple(fake.shape)}")
        real = gather_features(real)[-self.queue_size:]
        fake = gather_features(fake)[-self.queue_size:]
        # Indices computed on the device: no host synchronisation on CUDA.
        rows = (self.queue_ptr + torch.arange(real.shape[0], device=self.queue_ptr.device)) % self.queue_size
        self.queue_real.index_copy_(0, rows, real.to(self.queue_real.dtype))
        self.queue_fake.index_copy_(0, rows, fake.to(self.queue_fake.dtype))
        self.queue_ptr.copy_((self.queue_ptr + real.shape[0]) % self.queue_size)


def hinge_d_loss(real_logits: Tensor, fake_logits: Tensor) -> tuple[Tensor, Tensor]:
    """(mean relu(1 - real), mean relu(1 + fake))."""
    return F.relu(1.0 - real_logits).mean(), F.relu(1.0 + fake_logits).mean()


def hinge_g_loss(fake_logits: Tensor) -> Tensor:
    return -fake_logits.mean()


def contrastive_loss(view1: Tensor, view2: Tensor, queue: Tensor, temperature: float = 0.07) -> Tensor:
    """InfoNCE over two views, as in the release.

    view1, view2: [B, d] projections of two augmentations of the same B images; queue
    [K, d] negatives (no gradient). The 2B rows [view1; view2] are compared by cosine
    similarity with [view1; view2; queue], divided by the temperature; the self-similarity
    logits are multiplied by 0 (they stay in the softmax with logit 0), and the loss is the
    mean over the 2B rows of -log softmax at the other view of the same image.
    """
    if view1.shape != view2.shape:
        raise ValueError(f"the two views differ in shape: {tuple(view1.shape)} vs {tuple(view2.shape)}")
    batch = view1.shape[0]
    anchors = F.normalize(torch.cat([view1, view2]).float(), dim=1)           # [2B, d]
    keys = torch.cat([anchors, F.normalize(queue.detach().float(), dim=1)])  # [2B + K, d]
    logits = anchors @ keys.t() / temperature
    not_self = torch.ones_like(logits)
    not_self.fill_diagonal_(0.0)
    index = torch.arange(2 * batch, device=logits.device)
    partner = (index + batch) % (2 * batch)                                   # i <-> i + B
    return F.cross_entropy(logits * not_self, partner)


def _unwrapped(disc: nn.Module) -> ContrastiveImageDiscriminator:
    """The ContrastiveImageDiscriminator inside a DistributedDataParallel wrapper, or itself."""
    return disc.module if isinstance(disc, nn.parallel.DistributedDataParallel) else disc


def _check_frames(frame0: Tensor, frame_t: Tensor) -> None:
    if frame0.shape != frame_t.shape:
        raise ValueError(f"frame 0 and frame t differ in shape: {tuple(frame0.shape)} vs {tuple(frame_t.shape)}")


def discriminator_loss(disc: ContrastiveImageDiscriminator, frame0: Tensor, frame_t: Tensor, *,
                       rng: torch.Generator | None = None, temperature: float | None = None,
                       w_contrastive: float = 2.0) -> dict[str, Tensor]:
    """Loss of one image-discriminator step. frame0, frame_t: generated frames [B, 3, R, R]
    (detached here). "Real" = augmented frame 0, "fake" = augmented frame t.

    loss = hinge(one view of each) + w_contrastive * (contrastive(real views) +
    contrastive(fake views)). Returns {"loss", "hinge_real", "hinge_fake",
    "contrastive_real", "contrastive_fake"}.
    """
    _check_frames(frame0, frame_t)
    core = _unwrapped(disc)
    temperature = core.temperature if temperature is None else temperature
    batch = frame0.shape[0]
    real1, real2 = two_views(frame0.detach(), rng, colour=core.colour_augment)
    fake1, fake2 = two_views(frame_t.detach(), rng, colour=core.colour_augment)
    # One forward for all four sets (the network has no batch statistics).
    logits, features = disc(torch.cat([real1, real2, fake1, fake2]))
    logits, features = logits.float(), features.float()
    real_logits, _, fake_logits, _ = logits.split(batch)
    f_real1, f_real2, f_fake1, f_fake2 = features.split(batch)
    hinge_real, hinge_fake = hinge_d_loss(real_logits, fake_logits)
    c_real = contrastive_loss(f_real1, f_real2, core.queue_real, temperature)
    c_fake = contrastive_loss(f_fake1, f_fake2, core.queue_fake, temperature)
    return {
        "loss": hinge_real + hinge_fake + w_contrastive * (c_real + c_fake),
        "hinge_real": hinge_real,
        "hinge_fake": hinge_fake,
        "contrastive_real": c_real,
        "contrastive_fake": c_fake,
    }


def generator_loss(disc: ContrastiveImageDiscriminator, frame0: Tensor, frame_t: Tensor, *,
                   rng: torch.Generator | None = None, w_match: float = 1.0,
                   update_queues: bool = True) -> dict[str, Tensor]:
    """Image-discriminator part of one motion-generator step. frame0, frame_t: generated
    frames [B, 3, R, R] (gradients flow to both).

    loss = -mean logit(aug frame t) + w_match * -mean cos(proj(aug frame t), proj(aug
    frame 0)) with the online network. With ``update_queues`` the momentum copy's features
    of the same views go into the "real" (frame 0) and "fake" (frame t) queues.
    Returns {"loss", "hinge", "match"}.
    """
    _check_frames(frame0, frame_t)
    core = _unwrapped(disc)
    batch = frame0.shape[0]
    real = augment(frame0, rng=rng, colour=core.colour_augment)
    fake = augment(frame_t, rng=rng, colour=core.colour_augment)
    if update_queues:
        core.enqueue(core.momentum_features(real), core.momentum_features(fake))
    logits, features = disc(torch.cat([real, fake]))
    logits, features = logits.float(), features.float()
    _, fake_logits = logits.split(batch)
    f_real, f_fake = features.split(batch)
    hinge = hinge_g_loss(fake_logits)
    match = -F.cosine_similarity(f_fake, f_real, dim=1).mean()
    return {"loss": hinge + w_match * match, "hinge": hinge, "match": match}
