"""Losses on latent trajectories given their starting latent, for the latent phase (mocohd_cli/training/latent_phase.py;
docs/method.md, "Additions", "Latent phase").

In the faces backbone's W a displacement that turns one face's head changes another face's identity
(docs/motion_control.md): motion depends on content. So these terms judge a walk *given where it starts*:
the training videos projected into the backbone give pairs (w_s, walk), the latent at some frame s of a
video and that video's displacements from it over the next frames in the motion model's PCA units, and the
motion generator, started at the same w_s, must make walks distributed as that video's walk.

  conditional energy score   E|X - y| - 1/2 E|X - X'|, X, X' two of K walks the model makes from w_s, y the
                             video's walk: a strictly proper scoring rule (Gneiting & Raftery 2007), so its
                             expectation is smallest exactly when the model's walks given w_s are distributed as
                             the data's walks given w_s. Its first term pulls each walk towards the video's; the
                             second keeps the K walks apart, so a model that ignores its motion codes pays for it.
                             No network is trained for it.
  conditional discriminator  D(c(w_s), walk) -> score, an MLP over the starting latent in whitened units beside
                             the flattened walk, matching-aware: it must call a real walk paired with another
                             video's start fake too, so it cannot ignore the start (LSGAN targets).

Nothing here renders a frame.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


def energy_score(samples: Tensor, target: Tensor) -> Tensor:
    """The energy score of `samples` [B, K, ...] (K >= 2 draws per condition) against one observation per
    condition `target` [B, ...], averaged over the B conditions (each draw flattened; Euclidean norms):

        ES = mean_b ( 1/K sum_k |x_bk - y_b| - 1/(2 K (K-1)) sum_{k != k'} |x_bk - x_bk'| )

    The pairwise term excludes k = k' (unbiased), so the expectation is minimised by the true conditional law."""
    batch, k = samples.shape[:2]
    if k < 2:
        raise ValueError(f"the energy score needs at least 2 draws per condition, got {k}")
    x = samples.reshape(batch, k, -1).float()
    y = target.reshape(batch, 1, -1).float()
    to_target = (x - y).norm(dim=2).mean(1)
    # pairwise distances without the zero diagonal (whose gradient is NaN through the norm)
    diff = x[:, :, None] - x[:, None]
    off = ~torch.eye(k, dtype=torch.bool, device=x.device)
    spread = diff[:, off].norm(dim=2).mean(1)
    return (to_target - 0.5 * spread).mean()


class ContentWhitener(nn.Module):
    """Starting latents [B, D] -> [B, k] in whitened units: (w - mean) projected on the k principal directions
    of the starting latents it was fitted on, each divided by the spread along it. Fitted once from the
    projected videos' latents (every frame is some window's start); buffers, so it is saved with its owner."""

    def __init__(self, latents: Tensor, k: int):
        super().__init__()
        rows = latents.reshape(-1, latents.shape[-1]).double()
        mean = rows.mean(0)
        centred = rows - mean
        _, singular, vh = torch.linalg.svd(centred, full_matrices=False)
        k = min(k, vh.shape[0])
        scale = (singular[:k] / max(rows.shape[0] - 1, 1) ** 0.5).clamp_min(1e-6)
        self.register_buffer("mean", mean.float())
        self.register_buffer("directions", vh[:k].float())
        self.register_buffer("scale", scale.float())

    @property
    def dim(self) -> int:
        return self.directions.shape[0]

    def forward(self, w: Tensor) -> Tensor:
        return ((w.float() - self.mean) @ self.directions.T) / self.scale


class ConditionalTrajectoryDiscriminator(nn.Module):
    """D(c, walk): c [B, k] the start in whitened units, walk [B, L-1, n] displacements from the start in PCA
    units -> one score per pair [B]. The walk enters both as displacements and as its steps (the frame-to-frame
    differences), so that the size of each step is as visible as where the walk goes."""

    def __init__(self, content_dim: int, steps: int, n_pca: int, width: int = 512):
        super().__init__()
        self.content_dim, self.steps, self.n_pca = content_dim, steps, n_pca
        self.net = nn.Sequential(nn.Linear(content_dim + 2 * steps * n_pca, width), nn.LeakyReLU(0.2),
                                 nn.Linear(width, width), nn.LeakyReLU(0.2), nn.Linear(width, 1))

    def forward(self, content: Tensor, walk: Tensor) -> Tensor:
        walk = walk.float()
        increments = torch.diff(walk, dim=1, prepend=walk.new_zeros(walk.shape[0], 1, walk.shape[2]))
        return self.net(torch.cat([content.float(), walk.flatten(1), increments.flatten(1)], 1)).squeeze(1)


def matching_d_loss(real: Tensor, fake: Tensor, mismatched: Tensor) -> Tensor:
    """LSGAN discriminator loss, matching-aware: real pairs -> 1, generated walks -> 0, real walks paired with
    another video's start -> 0 (fake and mismatched share the 0 side's weight)."""
    return ((real - 1) ** 2).mean() + 0.5 * ((fake ** 2).mean() + (mismatched ** 2).mean())


def matching_g_loss(fake: Tensor) -> Tensor:
    """LSGAN generator loss: the generated pairs' scores -> 1."""
    return ((fake - 1) ** 2).mean()


def shuffled(index: Tensor, rng: torch.Generator) -> Tensor:
    """A permutation of `index` [B] in which no entry keeps its own value where that is possible (a cyclic
    shift of a random permutation: each position gets another position's value)."""
    batch = index.shape[0]
    order = torch.randperm(batch, generator=rng, device=rng.device).to(index.device)
    shifted = order.roll(1)
    out = index.clone()
    out[order] = index[shifted]
    return out
