"""Walk matching: the generated walks in the latent space must be distributed as the training videos' walks
(`--w-walk`; docs/method.md, "Additions").

The training videos projected into the backbone frame by frame are walks in W (mocohd_cli/models/latent_prior.py).
Seen as displacements from their first frame in the motion model's PCA units, a real walk moves about one unit
along each of the basis' directions, and every video walks its own way. A motion model trained by discriminators
on a few clips per step can settle on one walk that every video takes, a tenth of the real size (measured on the
shipped faces example: docs/examples.md, "Ablation", walk matching). Walks cost no synthesis, so this term rolls out a
large batch of them each step and pulls their distribution towards the real walks' with the energy distance

    E(X, Y) = 2 E|x - y| - E|x - x'| - E|y - y'|

(Szekely & Rizzo), which is zero only when the two distributions are equal: the first term pulls each walk
towards the real ones, the second pushes the generated walks apart, so a walk that every video shares pays
for it. Generated walks are judged in windows that start anywhere in the rollout, not only at frame 0, so
that the motion keeps the training videos' statistics past the clip length (stationary motion).
"""
from __future__ import annotations

import torch
from torch import Tensor


def energy_distance(x: Tensor, y: Tensor) -> Tensor:
    """The energy distance between the samples x [N, ...] and y [M, ...] (each sample flattened), in the
    samples' units. The V-statistic: the within-sample means include each sample's zero distance to itself,
    which biases them low by a factor (N-1)/N; with the hundreds of samples used here that is negligible."""
    x, y = x.flatten(1).float(), y.flatten(1).float()
    return 2 * torch.cdist(x, y).mean() - torch.cdist(x, x).mean() - torch.cdist(y, y).mean()


def walk_windows(displacements: Tensor, length: int, starts: Tensor) -> Tensor:
    """Windows of `length` frames from walks given as displacements from frame 0 [B, H-1, n]
    (`Rollout.displacements`), window b starting at frame starts[b] in [0, H - length]: their displacements
    from their own first frame [B, length-1, n]."""
    batch, steps, n = displacements.shape
    if length < 2 or length > steps + 1:
        raise ValueError(f"a window of {length} frames does not fit walks of {steps + 1} frames")
    if starts.shape != (batch,) or int(starts.min()) < 0 or int(starts.max()) > steps + 1 - length:
        raise ValueError(f"window starts must be {batch} frames in [0, {steps + 1 - length}]")
    walk = torch.cat([displacements.new_zeros(batch, 1, n), displacements], 1)  # frame 0 included: [B, H, n]
    index = (starts.to(walk.device)[:, None] + torch.arange(length, device=walk.device))[..., None].expand(-1, -1, n)
    window = walk.gather(1, index)
    return window[:, 1:] - window[:, :1]
