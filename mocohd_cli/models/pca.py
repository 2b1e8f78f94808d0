"""Statistics of the motion space: PCA of latents sampled through the backbone's mapping (the release's
basis), or of the walks the training videos take once projected into the backbone (`--pca-source videos`).

Exact, streaming and in torch: the mean and second moment are accumulated in float64 over
batches, then the covariance is eigendecomposed once. Results are cached per backbone
checkpoint (sha256), sample count, truncation and seed.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from ..infra.files import cache_dir as user_cache_dir, read_safetensors, write_safetensors


class StreamingCovariance:
    """Running mean and covariance of row vectors, exact up to float64 rounding."""

    def __init__(self, dim: int):
        self.count = 0
        self.total = torch.zeros(dim, dtype=torch.float64)
        self.outer = torch.zeros(dim, dim, dtype=torch.float64)

    def update(self, rows: Tensor) -> None:
        rows = rows.detach().to("cpu", torch.float64)
        self.count += rows.shape[0]
        self.total += rows.sum(0)
        self.outer += rows.T @ rows

    def mean(self) -> Tensor:
        return self.total / self.count

    def covariance(self) -> Tensor:
        mean = self.mean()
        return (self.outer - self.count * torch.outer(mean, mean)) / max(self.count - 1, 1)


def principal_components(covariance: Tensor) -> tuple[Tensor, Tensor]:
    """(components [D, D] with orthonormal rows sorted by variance, standard deviations [D])."""
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
    order = torch.argsort(eigenvalues, descending=True)
    components = eigenvectors[:, order].T
    # Fix each component's sign (largest-magnitude entry positive) so results are reproducible.
    pivot = components.abs().argmax(dim=1)
    signs = torch.sign(components.gather(1, pivot[:, None]))
    components = components * signs
    stdev = eigenvalues[order].clamp_min(0).sqrt()
    return components.float(), stdev.float()


@torch.no_grad()
def motion_pca(backbone, *, n_pca: int, n_samples: int = 100_000, batch_size: int = 4096,
               seed: int = 0, cache_dir: str | Path | None = None,
               progress=None) -> tuple[Tensor, Tensor]:
    """PCA of the motion space of `backbone`: ([n_pca, D] components, [n_pca] standard deviations)."""
    sha = getattr(backbone, "checkpoint_sha256", None)
    cache_file = None
    if sha is not None:
        root = Path(cache_dir) if cache_dir is not None else user_cache_dir() / "pca"
        cache_file = root / f"{backbone.name}-{sha[:16]}-n{n_samples}-t{backbone.truncation:g}-s{seed}.safetensors"
        if cache_file.exists():
            tensors, _ = read_safetensors(cache_file, what="PCA cache")
            return tensors["components"][:n_pca], tensors["stdev"][:n_pca]
    rng = torch.Generator().manual_seed(seed)
    stats = StreamingCovariance(backbone.latent_dim)
    done = 0
    while done < n_samples:
        n = min(batch_size, n_samples - done)
        stats.update(backbone.sample_latent(n, rng=rng).float())
        done += n
        if progress is not None:
            progress(done, n_samples)
    components, stdev = principal_components(stats.covariance())
    if cache_file is not None:
        write_safetensors(cache_file, {"components": components, "stdev": stdev, "mean": stats.mean().float()},
                          {"backbone": backbone.name, "checkpoint_sha256": sha, "n_samples": n_samples})
    return components[:n_pca], stdev[:n_pca]


def displacement_pca(latents: Tensor) -> tuple[Tensor, Tensor]:
    """PCA of walks [N, F, D] (the training videos projected into the backbone): the directions of their
    displacements from frame 0 and the spread along each (root mean square, about no mean: a walk that every
    video shares is motion too). Returns ([D, D] components, [D] standard deviations) like
    `principal_components`; the caller keeps as many as it moves along."""
    if latents.dim() != 3 or latents.shape[1] < 2:
        raise ValueError(f"walks must be [videos, frames >= 2, latent size], got {tuple(latents.shape)}")
    moved = (latents[:, 1:].double() - latents[:, :1].double()).flatten(0, 1)
    return principal_components(moved.T @ moved / moved.shape[0])
