"""The contrastive image discriminator of cross-domain training (METHOD.md, "Training,
cross-domain").

In cross-domain training the generated frames never look like the real videos, so the
image discriminator does not compare real and generated images: its "real" images are
augmented views of a generated frame 0 and its "fake" images augmented views of a generated
frame t. It learns whether the content drifted away from the first frame.

Pieces, assembled by a training objective:

- ``ResidualDiscriminator``: BigGAN-style residual discriminator with a hinge logit and a
  projection head.
- ``ContrastiveImageDiscriminator``: the online network, its momentum (EMA) copy and two
  feature queues ("real" and "fake"); all of it is in ``state_dict``.
- ``discriminator_loss`` / ``generator_loss``: the losses of one D step / one G step.
  ``disc.momentum_update()`` must be called after each D optimiser step.

Under torch.distributed every rank must call ``generator_loss`` (or ``enqueue``) the same
number of times with the same batch size: the queued features are all-gathered so that the
queues stay identical on all ranks. The loss functions accept the discriminator itself or a
DistributedDataParallel wrapper of it (the forward then goes through the wrapper, so the
online network's gradients are averaged across ranks).
"""
from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

from .augment import augment, two_views

__all__ = [
    "ContrastiveImageDiscriminator",
    "ResidualDiscriminator",
    "contrastive_loss",
    "discriminator_loss",
    "gather_features",
    "generator_loss",
    "hinge_d_loss",
    "hinge_g_loss",
]


def _sn(layer: nn.Module) -> nn.Module:
    """Orthogonal init (as the release's BigGAN D), then spectral normalisation."""
    nn.init.orthogonal_(layer.weight)
    return spectral_norm(layer)


class _DownBlock(nn.Module):
    """Residual block: [ReLU] conv3x3 -> ReLU -> conv3x3 [-> avgpool 2], plus a shortcut.

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
    """BigGAN-style discriminator: spectral-normalised residual blocks that halve the
    resolution down to 4x4 (depth = log2(resolution) - 2), one more block at 4x4, ReLU, sum
    pooling, then a shared linear layer feeding both the hinge logit and a 2-layer
    projection MLP (as in the authors' release).

    ``forward(x [N, C, R, R]) -> (logits [N], projections [N, proj_dim])`` (not normalised).
    Channels: ``width * min(2**i, 16)`` for the i-th down-sampling block.
    """

    def __init__(self, resolution: int, *, width: int = 96, proj_dim: int = 256, in_channels: int = 3):
        super().__init__()
        if resolution < 8:
            raise ValueError(f"resolution must be at least 8 pixels, got {resolution}")
        self.resolution = resolution
        self.proj_dim = proj_dim
        n_down = max(1, int(math.log2(resolution)) - 2)
        channels = [width * min(2 ** i, 16) for i in range(n_down)]
        blocks = []
        previous = in_channels
        for i, out in enumerate(channels):
            blocks.append(_DownBlock(previous, out, downsample=True, preactivation=i > 0))
            previous = out
        blocks.append(_DownBlock(previous, previous, downsample=False, preactivation=True))
        self.blocks = nn.Sequential(*blocks)
        self.shared = _sn(nn.Linear(previous, proj_dim))
        self.logit = _sn(nn.Linear(proj_dim, 1))
        self.head = nn.Sequential(_sn(nn.Linear(proj_dim, proj_dim)), nn.ReLU(),
                                  _sn(nn.Linear(proj_dim, proj_dim)))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if x.dim() != 4 or x.shape[-2:] != (self.resolution, self.resolution):
            raise ValueError(f"expected images [N, C, {self.resolution}, {self.resolution}], "
                             f"got shape {tuple(x.shape)}")
        h = torch.sum(F.relu(self.blocks(x)), dim=(2, 3))
        h = F.relu(self.shared(h))
        return self.logit(h).squeeze(1), self.head(h)


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
    network. Optimise ``disc.online.parameters()``; the momentum copy never gets gradients
    and follows the online network through ``momentum_update()`` (call it after each D
    step). The queues hold L2-normalised momentum-copy features, start as random unit
    vectors, and are filled through ``enqueue`` (``generator_loss`` does it).
    """

    def __init__(self, resolution: int, *, width: int = 96, proj_dim: int = 256,
                 queue_size: int = 4096, momentum: float = 0.999, temperature: float = 0.07,
                 in_channels: int = 3):
        super().__init__()
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must lie in [0, 1], got {momentum}")
        if queue_size < 1 or temperature <= 0:
            raise ValueError("queue_size must be >= 1 and temperature > 0")
        self.momentum = momentum
        self.temperature = temperature
        options = dict(width=width, proj_dim=proj_dim, in_channels=in_channels)
        self.online = ResidualDiscriminator(resolution, **options)
        self.momentum_copy = ResidualDiscriminator(resolution, **options)
        self.momentum_copy.load_state_dict(self.online.state_dict())
        self.momentum_copy.requires_grad_(False)
        self.momentum_copy.eval()
        self.register_buffer("queue_real", F.normalize(torch.randn(queue_size, proj_dim), dim=1))
        self.register_buffer("queue_fake", F.normalize(torch.randn(queue_size, proj_dim), dim=1))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    @property
    def queue_size(self) -> int:
        return self.queue_real.shape[0]

    def train(self, mode: bool = True) -> "ContrastiveImageDiscriminator":
        # The momentum copy stays in eval mode: its spectral-norm vectors are copied from
        # the online network rather than refined by its own power iterations.
        super().train(mode)
        self.momentum_copy.eval()
        return self

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        logits, projections = self.online(x)
        return logits, F.normalize(projections, dim=1)

    @torch.no_grad()
    def momentum_features(self, x: Tensor) -> Tensor:
        """L2-normalised projections of the momentum copy (no gradient)."""
        return F.normalize(self.momentum_copy(x)[1], dim=1)

    @torch.no_grad()
    def momentum_update(self) -> None:
        """copy <- momentum * copy + (1 - momentum) * online, for every parameter; buffers
        (the spectral-norm power-iteration vectors) are copied."""
        for held, online in zip(self.momentum_copy.parameters(), self.online.parameters()):
            held.mul_(self.momentum).add_(online.detach(), alpha=1.0 - self.momentum)
        for held, online in zip(self.momentum_copy.buffers(), self.online.buffers()):
            held.copy_(online)

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
    real1, real2 = two_views(frame0.detach(), rng)
    fake1, fake2 = two_views(frame_t.detach(), rng)
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
    real = augment(frame0, rng=rng)
    fake = augment(frame_t, rng=rng)
    if update_queues:
        core.enqueue(core.momentum_features(real), core.momentum_features(fake))
    logits, features = disc(torch.cat([real, fake]))
    logits, features = logits.float(), features.float()
    _, fake_logits = logits.split(batch)
    f_real, f_fake = features.split(batch)
    hinge = hinge_g_loss(fake_logits)
    match = -F.cosine_similarity(f_fake, f_real, dim=1).mean()
    return {"loss": hinge + w_match * match, "hinge": hinge, "match": match}
