"""Feature statistics and the distances computed from them (docs/evaluation.md).

Definitions follow StyleGAN-V's src/metrics so numbers compare with published tables:
- mean and covariance accumulated in float64, covariance divided by N (population);
- Frechet distance |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2));
- KID / KVD: unbiased MMD^2 with the kernel (x.y / d + 1)^3 over 100 subsets of at most
  1000, reported times 1000 as StyleGAN-V does.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..infra.errors import MocohdError
from ..infra.files import atomic_path

# Features kept for the kernel metrics: KID draws subsets of at most 1000 from them, so a seeded
# sample this large stands in for more (StyleGAN-V keeps up to a million real frames).
MAX_KEPT_FEATURES = 100_000
STATS_FORMAT = "mocohd-feature-stats-v1"


@dataclass
class FeatureStats:
    """Running float64 sums of features (for mean and covariance) and the features themselves
    (up to `max_kept`, a uniform reservoir sample beyond that)."""

    dim: int | None = None
    count: int = 0
    max_kept: int = MAX_KEPT_FEATURES
    seed: int = 0
    _sum: np.ndarray | None = None
    _outer: np.ndarray | None = None
    _kept: list = field(default_factory=list)
    _rng: np.random.Generator | None = None

    def update(self, features) -> None:
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2:
            raise ValueError(f"features must be [N, F], got {x.shape}")
        if self.dim is None:
            self.dim = x.shape[1]
            self._sum = np.zeros(self.dim)
            self._outer = np.zeros((self.dim, self.dim))
            self._rng = np.random.default_rng(self.seed)
        if x.shape[1] != self.dim:
            raise ValueError(f"features of size {x.shape[1]} after {self.dim}")
        self._sum += x.sum(0)
        self._outer += x.T @ x
        for row in x.astype(np.float32):
            self.count += 1
            if len(self._kept) < self.max_kept:
                self._kept.append(row)
            else:  # reservoir sampling: every feature seen is kept with the same probability
                slot = int(self._rng.integers(self.count))
                if slot < self.max_kept:
                    self._kept[slot] = row

    @property
    def mean(self) -> np.ndarray:
        self._need(1)
        return self._sum / self.count

    @property
    def cov(self) -> np.ndarray:
        self._need(2)
        mean = self.mean
        return self._outer / self.count - np.outer(mean, mean)

    @property
    def features(self) -> np.ndarray:
        self._need(1)
        return np.stack(self._kept)

    def _need(self, n: int) -> None:
        if self.count < n:
            raise MocohdError(f"{self.count} feature vectors are too few for statistics (need {n} or more)",
                              fix="evaluate more videos (--num-videos) or use a larger dataset")

    # -- files ------------------------------------------------------------------------------
    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"count": np.int64(self.count), "sum": self._sum, "outer": self._outer, "features": self.features}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> "FeatureStats":
        stats = cls(dim=int(arrays["sum"].shape[0]), count=int(arrays["count"]))
        stats._sum, stats._outer = arrays["sum"].astype(np.float64), arrays["outer"].astype(np.float64)
        stats._kept = list(arrays["features"].astype(np.float32))
        return stats


def save_stats(path: str | Path, entries: dict[str, tuple[FeatureStats, dict]]) -> Path:
    """Statistics of one or more feature kinds in one .npz (no pickles): per kind its sums and kept
    features, and a JSON protocol (dataset, clip length, resolution, detector sha256, ...)."""
    arrays, protocols = {}, {}
    for kind, (stats, protocol) in entries.items():
        arrays.update({f"{kind}/{name}": value for name, value in stats.to_arrays().items()})
        protocols[kind] = protocol
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays, protocol=np.array(json.dumps({"format": STATS_FORMAT, "kinds": protocols})))
    return Path(path)


def load_stats(path: str | Path) -> dict[str, tuple[FeatureStats, dict]]:
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            header = json.loads(str(data["protocol"]))
            if header.get("format") != STATS_FORMAT:
                raise ValueError("not a statistics file")
            return {kind: (FeatureStats.from_arrays({name: data[f"{kind}/{name}"]
                                                     for name in ("count", "sum", "outer", "features")}), protocol)
                    for kind, protocol in header["kinds"].items()}
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
        raise MocohdError(f"not a mocohd statistics file ({exc})", path=path,
                          fix="write one with `mocohd eval stats DATA --out FILE.npz`") from exc


def gaussian_stats(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased) covariance of samples [N, D], float64 (a
    few samples held in memory; `FeatureStats` streams many)."""
    samples = np.asarray(samples, np.float64).reshape(len(samples), -1)
    mean = samples.mean(0)
    centred = samples - mean
    cov = centred.T @ centred / max(1, len(samples) - 1)
    return mean, cov


def frechet_distance(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    """|mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2)), in float64.

    tr((S1 S2)^(1/2)) is computed as the sum of square roots of the eigenvalues of the symmetric
    matrix S1^(1/2) S2 S1^(1/2), which has the same spectrum as S1 S2: no complex parts, no failed
    square root on singular covariances (tiny negative eigenvalues from rounding count as 0)."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    cov1, cov2 = np.asarray(cov1, np.float64), np.asarray(cov2, np.float64)
    root1 = _psd_sqrt(cov1)
    middle = root1 @ cov2 @ root1
    eigenvalues = np.linalg.eigvalsh((middle + middle.T) / 2)
    trace_sqrt = np.sqrt(np.clip(eigenvalues, 0, None)).sum()
    value = np.square(mu1 - mu2).sum() + np.trace(cov1) + np.trace(cov2) - 2 * trace_sqrt
    return float(max(value, 0.0))


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    eigenvalues, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(eigenvalues, 0, None))) @ vectors.T


def kernel_distance(fake: np.ndarray, real: np.ndarray, *, num_subsets: int = 100, max_subset_size: int = 1000,
                    seed: int = 0) -> float:
    """Unbiased MMD^2 with the polynomial kernel (x.y / d + 1)^3, averaged over seeded subsets,
    times 1000 (StyleGAN-V's kernel_inception_distance.py)."""
    fake, real = np.asarray(fake, np.float64), np.asarray(real, np.float64)
    d = real.shape[1]
    m = min(len(fake), len(real), max_subset_size)
    if m < 2:
        raise MocohdError(f"{m} feature vectors are too few for a kernel distance (need 2 or more)",
                          fix="evaluate more videos (--num-videos)")
    rng = np.random.default_rng(seed)
    total = 0.0
    for _ in range(num_subsets):
        x = fake[rng.choice(len(fake), m, replace=False)]
        y = real[rng.choice(len(real), m, replace=False)]
        within = (x @ x.T / d + 1) ** 3 + (y @ y.T / d + 1) ** 3
        across = (x @ y.T / d + 1) ** 3
        total += (within.sum() - np.diag(within).sum()) / (m - 1) - across.sum() * 2 / m
    return float(total / num_subsets / m * 1000.0)


def inception_score(probabilities: np.ndarray, *, splits: int = 10) -> tuple[float, float]:
    """Mean and (population) std over `splits` of exp(E[KL(p(y|x) || p(y))]), after a shuffle with
    RandomState(42), as StyleGAN-V's video_inception_score.py."""
    p = np.array(probabilities, np.float64)
    np.random.RandomState(42).shuffle(p)
    n = len(p)
    scores = []
    for i in range(splits):
        part = p[i * n // splits:(i + 1) * n // splits]
        if len(part) == 0:
            raise MocohdError(f"{n} videos are too few for {splits} splits", fix="evaluate more videos")
        with np.errstate(divide="ignore", invalid="ignore"):
            kl = part * (np.log(part) - np.log(np.mean(part, axis=0, keepdims=True)))
        scores.append(np.exp(np.mean(np.nansum(kl, axis=1))))
    return float(np.mean(scores)), float(np.std(scores))
