"""The latent motion discriminator: judges motion where the motion generator makes it, in the latent space
(`--w-latent-motion`; docs/method.md, "Additions").

The image-space discriminators see frames; to them a walk in W that changes a face's colours a little and
its pose a little can look much like a head turn. The training videos projected into the backbone frame
by frame (`mocohd_cli.models.inversion.project_videos`) are walks in W that the data's motion takes. This
discriminator sees a clip's displacements from its frame 0 in PCA units ([B, T-1, n], what
`Rollout.displacements` holds for a generated clip) and learns to tell the projected training clips' from
the generated ones; the motion generator learns to make walks it cannot tell apart.

Projections file (`--latent-motion FILE`, or made and cached on first use by
`mocohd_cli.training.projections`): safetensors with `latents`
[videos, frames, latent size] (float32) and metadata format "mocohd-projected-videos", the backbone's
sha256, the time step, the frame size and the dataset it was made from.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from ..infra.errors import MocohdError
from ..infra.files import read_safetensors, write_safetensors

FORMAT = "mocohd-projected-videos"


def displacements_in_pca_units(latents: Tensor, components: Tensor, stdev: Tensor) -> Tensor:
    """Latents [N, T, D] -> displacements from frame 0 in PCA units [N, T-1, n]: (w_t - w_0) P^T / s.

    For a generated clip this is `Rollout.displacements` (P's rows are orthonormal). Of a projected walk,
    the part outside the n principal directions is dropped: the motion generator cannot make it."""
    moved = latents[:, 1:].float() - latents[:, :1].float()
    return moved @ components.float().T / stdev.float()


def clip_bank(latents: Tensor, frames: int, components: Tensor, stdev: Tensor) -> Tensor:
    """Every clip of `frames` consecutive latents of every projected video [N, F, D] -> [M, frames-1, n]."""
    if latents.shape[1] < frames:
        raise ValueError(f"projected videos have {latents.shape[1]} frames, fewer than a clip's {frames}")
    clips = latents.unfold(1, frames, 1).permute(0, 1, 3, 2).flatten(0, 1)   # [N * starts, frames, D]
    return displacements_in_pca_units(clips, components, stdev)


class LatentMotionDiscriminator(nn.Module):
    """An MLP over a clip's displacements [B, T-1, n] -> one score per clip, as nested scale outputs
    ([[scores]]) so that the relativistic losses of `mocohd_cli.models.losses` apply."""

    def __init__(self, steps: int, n_pca: int, width: int = 256):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(steps * n_pca, width), nn.LeakyReLU(0.2),
                                 nn.Linear(width, width), nn.LeakyReLU(0.2), nn.Linear(width, 1))

    def forward(self, displacements: Tensor) -> list[list[Tensor]]:
        return [[self.net(displacements.float())]]


# ------------------------------------------------------------------------------ projections file
def read_projections(path: str | Path, *, backbone_sha256: str | None, time_step: int, frames: int,
                     latent_dim: int | None = None) -> Tensor:
    """The projected latents [N, F, D] of a projections file, checked against the run that uses them."""
    tensors, meta = read_safetensors(path, what="projections file")
    if meta.get("format") != FORMAT or "latents" not in tensors or tensors["latents"].dim() != 3:
        raise MocohdError("not a projections file (no latents [videos, frames, latent size])", path=path,
                          fix="pass a file written by mocohd (or leave --latent-motion out to project the "
                              "training videos)")
    recorded = {"backbone_sha256": meta.get("backbone_sha256"),
                "time_step": int(meta["time_step"]) if meta.get("time_step", "").isdigit() else None}
    if backbone_sha256 and recorded["backbone_sha256"] and recorded["backbone_sha256"] != backbone_sha256:
        raise MocohdError("the projections were made with another backbone "
                          f"(sha256 {recorded['backbone_sha256'][:12]}..., this run's {backbone_sha256[:12]}...)",
                          path=path, fix="leave --latent-motion out to project the training videos into this backbone")
    if recorded["time_step"] is not None and recorded["time_step"] != time_step:
        raise MocohdError(f"the projections step {recorded['time_step']} frames at a time, the run "
                          f"--time-step {time_step}", path=path, fix="use the projections' time step, or leave "
                          "--latent-motion out to project the training videos again")
    latents = tensors["latents"].float()
    if latent_dim is not None and latents.shape[2] != latent_dim:
        raise MocohdError(f"the projected latents have {latents.shape[2]} dimensions, the backbone's {latent_dim}",
                          path=path, fix="use projections made with this backbone, or leave --latent-motion out")
    if not torch.isfinite(latents).all():
        raise MocohdError("the projected latents hold NaN or infinite values", path=path,
                          fix="the file is damaged: leave --latent-motion out to project the training videos again")
    if latents.shape[1] < frames:
        raise MocohdError(f"the projected videos have {latents.shape[1]} frames, fewer than a clip's {frames}",
                          path=path, fix="project longer videos or lower --frames")
    return latents


def write_projections(path: str | Path, latents: Tensor, *, backbone_sha256: str | None, time_step: int,
                      size: int, data: str, psnr: float) -> Path:
    return write_safetensors(path, {"latents": latents.float()},
                             {"format": FORMAT, "backbone_sha256": backbone_sha256, "time_step": time_step,
                              "size": size, "data": data, "psnr_median": round(psnr, 3)})
