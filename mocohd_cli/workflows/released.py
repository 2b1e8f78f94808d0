"""Motion generators released with MoCoGAN-HD (snap-research/MoCoGAN-HD).

A release is `modelR_epoch_N.pth` (the state dict of its RNNModule: `w` [h_dim, n_pca], `b`
[n_pca], `enc_cell.*` and `cell.*` (LSTMCell), `fc1.*`, `fc2.*`) plus `pca_comp.npy`
[>= n_pca, D] and `pca_stdev.npy` [>= n_pca] in its PCA folder, of which the first n_pca rows
are used. The parameter names are those of `MotionGenerator`, whose update rule is the
released one, so the import is a checked copy; the PCA statistics become its buffers.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..models.backbone import ImageGenerator
from ..infra.errors import MocohdError
from ..infra.files import require_exists, sha256_of, torch_load_safely
from ..infra.hub import recorded_reference
from ..models.motion import MotionGenerator

LSTM_PARTS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
RELEASED_KEYS = ("w", "b", *(f"{cell}.{part}" for cell in ("enc_cell", "cell") for part in LSTM_PARTS),
                 "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias")
PCA_FILES = ("pca_comp.npy", "pca_stdev.npy")
RELEASE_FIX = "pass a modelR_epoch_N.pth from MoCoGAN-HD's checkpoints (the motion generator's state dict)"
# Settings of the released training scripts, recorded so `mocohd sample` plays them back alike.
RELEASED_N_FRAMES = 16
RELEASED_TIME_STEP = 2


def read_released_state(path: str | Path) -> dict[str, Tensor]:
    """The RNNModule state dict, checked for every key and consistent shapes."""
    path = Path(path)
    state = torch_load_safely(path, "released motion generator")
    if not isinstance(state, dict):
        raise MocohdError(f"the file holds a {type(state).__name__}, not a state dict", path=path, fix=RELEASE_FIX)
    if state and all(str(key).startswith("module.") for key in state):  # saved from a DDP wrapper
        state = {key[len("module."):]: value for key, value in state.items()}
    missing = [key for key in RELEASED_KEYS if not isinstance(state.get(key), Tensor)]
    if missing:
        raise MocohdError(f"not a MoCoGAN-HD motion generator: no {', '.join(missing[:4])}"
                          f"{' ...' if len(missing) > 4 else ''}", path=path, fix=RELEASE_FIX)
    h_dim, n_pca = state["w"].shape
    latent_dim = state["enc_cell.weight_ih"].shape[1]
    expected = {"b": (n_pca,), "fc1.weight": (latent_dim, 2 * h_dim), "fc1.bias": (latent_dim,),
                "fc2.weight": (latent_dim, latent_dim), "fc2.bias": (latent_dim,)}
    for cell in ("enc_cell", "cell"):
        expected.update({f"{cell}.weight_ih": (4 * h_dim, latent_dim), f"{cell}.weight_hh": (4 * h_dim, h_dim),
                         f"{cell}.bias_ih": (4 * h_dim,), f"{cell}.bias_hh": (4 * h_dim,)})
    wrong = [f"{key} {tuple(state[key].shape)} (expected {shape})" for key, shape in expected.items()
             if tuple(state[key].shape) != shape]
    if wrong:
        raise MocohdError(f"inconsistent shapes for h_dim={h_dim}, n_pca={n_pca}, latent size {latent_dim}: "
                          + "; ".join(wrong[:3]), path=path, fix=RELEASE_FIX)
    return {key: state[key].detach().float() for key in RELEASED_KEYS}


def read_pca_dir(pca_dir: str | Path, n_pca: int, latent_dim: int) -> tuple[Tensor, Tensor]:
    """First n_pca rows of pca_comp.npy [K, D] and pca_stdev.npy [K] (pickle-free np.load)."""
    pca_dir = require_exists(pca_dir, "PCA folder", fix="pass --pca-dir holding pca_comp.npy and pca_stdev.npy")
    arrays = []
    for name in PCA_FILES:
        file = require_exists(pca_dir / name, name, fix="pass the --pca-dir written by MoCoGAN-HD's get_stats_pca.py")
        try:
            # memory-mapped: a header that claims more than the file holds fails here, unallocated
            arrays.append(np.load(file, allow_pickle=False, mmap_mode="r"))
        except (ValueError, OSError) as exc:
            raise MocohdError(f"cannot read {name} as a numpy array ({exc})", path=file,
                              fix="pass the .npy files written by get_stats_pca.py") from exc
    components, stdev = arrays
    if components.ndim != 2 or components.shape[1] != latent_dim or components.shape[0] < n_pca:
        raise MocohdError(f"pca_comp.npy has shape {components.shape}; the motion generator needs at least "
                          f"{n_pca} components of size {latent_dim}", path=pca_dir / PCA_FILES[0],
                          fix="use the PCA folder computed for the same image generator")
    if stdev.ndim != 1 or stdev.shape[0] < n_pca:
        raise MocohdError(f"pca_stdev.npy has shape {stdev.shape}; at least {n_pca} values are needed",
                          path=pca_dir / PCA_FILES[1], fix="use the PCA folder computed for the same image generator")
    components, stdev = (np.array(components[:n_pca], dtype=np.float32), np.array(stdev[:n_pca], dtype=np.float32))
    if not (np.isfinite(components).all() and np.isfinite(stdev).all()):
        raise MocohdError("the PCA statistics hold NaN or infinite values", path=pca_dir,
                          fix="recompute them with get_stats_pca.py")
    return torch.from_numpy(components), torch.from_numpy(stdev)


def backbone_metadata(backbone: ImageGenerator | str | None) -> dict:
    """What a motion file records about the image generator it belongs to."""
    if backbone is None:
        return {}
    if isinstance(backbone, str):
        return {"backbone": backbone}
    meta = {"backbone": getattr(backbone, "spec", None) or backbone.name, "backbone_name": backbone.name,
            "backbone_checkpoint": recorded_reference(backbone.checkpoint_path or None),
            "backbone_sha256": backbone.checkpoint_sha256}
    return {key: value for key, value in meta.items() if value is not None}


def import_released_motion(checkpoint: str | Path, pca_dir: str | Path, *, w_residual: float = 0.2,
                           backbone: ImageGenerator | str | None = None) -> MotionGenerator:
    """A MotionGenerator holding a released modelR checkpoint and its PCA statistics.

    `w_residual` is not stored in the release (its scripts pass it on the command line; 0.2 by
    default). `backbone`: the loaded image generator (checked against the latent size and
    recorded) or just its name (recorded).
    """
    checkpoint = Path(checkpoint)
    state = read_released_state(checkpoint)
    h_dim, n_pca = state["w"].shape
    latent_dim = state["enc_cell.weight_ih"].shape[1]
    if isinstance(backbone, ImageGenerator) and backbone.latent_dim != latent_dim:
        raise MocohdError(f"the motion generator walks a {latent_dim}-d latent space but backbone "
                          f"{backbone.name!r} has {backbone.latent_dim}-d latents", path=checkpoint,
                          fix="pass the image generator this motion generator was trained with")
    components, stdev = read_pca_dir(Path(pca_dir), n_pca, latent_dim)
    info = {"source": "MoCoGAN-HD release", "source_checkpoint": checkpoint.name,
            "source_sha256": sha256_of(checkpoint), "n_frames": RELEASED_N_FRAMES,
            "time_step": RELEASED_TIME_STEP, **backbone_metadata(backbone)}
    motion = MotionGenerator(latent_dim, h_dim=h_dim, n_pca=n_pca, w_residual=w_residual,
                             pca_components=components, pca_stdev=stdev, info=info)
    motion.load_state_dict({**motion.state_dict(), **state}, strict=True)
    return motion
