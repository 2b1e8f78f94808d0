"""The motion generator: an LSTM that walks the image generator's latent space (docs/method.md, "Motion generator").

    h_0, c_0 = LSTMCell_enc(w_0)
    h_t, c_t = LSTMCell(eps_t, (h_{t-1}, c_{t-1}))              eps_t ~ N(0, I)
    w_t      = w_{t-1} + w_residual * tanh(h_t A + b) (diag(s) P)  P, s: PCA of the motion space

plus a mutual-information head eps_hat_t = fc2(relu(fc1([h_t, c_t]))) that must recover eps_t.
With `feedback` (an addition, docs/method.md, "Additions") the cell also reads where the walk is:
LSTMCell([eps_t, d_{t-1}], ...), d_{t-1} = (w_{t-1} - w_0) in the basis' units.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
import warnings

import torch
from torch import Tensor, nn

from ..infra.errors import MocohdError, MocohdWarning
from ..infra.files import read_safetensors, require_regular_file, safetensors_metadata, write_safetensors
from ..infra.hub import as_kind
from ..infra.schema import Field, decode_metadata, read_fields
from .backbone import load_backbone, require_registered

FORMAT_TAG = "mocohd-motion"
FORMAT_VERSION = 1
# Metadata keys that describe the architecture; everything else is free-form run information.
_ARCH_KEYS = ("latent_dim", "h_dim", "n_pca", "w_residual", "feedback")
# The release's sizes (docs/method.md, "Motion generator"); n_pca is capped by the latent size.
DEFAULT_H_DIM = 384
DEFAULT_N_PCA = 384
DEFAULT_W_RESIDUAL = 0.2
# What a motion file's metadata may hold, typed and bounded (a file never chooses sizes that do
# not match its own tensors: `_check_tensor_shapes`).
MAX_DIM = 65_536
METADATA_FIELDS = (
    Field("format", str, choices=(FORMAT_TAG,)),
    Field("format_version", int, lo=1, hi=FORMAT_VERSION),
    Field("latent_dim", int, lo=1, hi=MAX_DIM),
    Field("h_dim", int, lo=1, hi=MAX_DIM),
    Field("n_pca", int, lo=1, hi=MAX_DIM),
    Field("w_residual", float, lo=0.0, hi=1e3),
    Field("feedback", bool, default=False),
    Field("fps", float, lo=1e-3, hi=1e3, default=None),
    Field("frames", int, lo=1, hi=1_000_000, default=None),
    Field("time_step", int, lo=1, hi=1000, default=None),  # training's --time-step (UPPER_BOUNDS)
    Field("backbone", str, hi=1000, default=None),
    Field("backbone_name", str, hi=1000, default=None),
    Field("backbone_checkpoint", str, default=None),
    Field("backbone_sha256", str, hi=64, default=None),
)
NOT_MOTION_FIX = "pass a motion.safetensors written by `mocohd train`/`transfer`/`import-motion`"


def default_n_pca(backbone) -> int:
    return min(DEFAULT_N_PCA, backbone.latent_dim)


@dataclass
class Rollout:
    latents: Tensor  # [B, T, D] trajectory in the motion space
    noise: Tensor  # [B, T-1, D] motion codes eps_1..eps_{T-1}
    noise_pred: Tensor  # [B, T-1, D] the MI head's reconstruction of them
    displacements: Tensor | None = None  # [B, T-1, n_pca] w_t - w_0 in PCA units (see `rollout`)

    def videos(self, start: int, stop: int | None = None) -> "Rollout":
        """The rollout of videos start..stop-1 of the batch (the same tensors, sliced)."""
        rows = slice(start, stop)
        return Rollout(self.latents[rows], self.noise[rows], self.noise_pred[rows],
                       None if self.displacements is None else self.displacements[rows])

    def first(self, n_frames: int) -> "Rollout":
        """The rollout's first `n_frames` frames (the same tensors, sliced)."""
        steps = n_frames - 1
        return Rollout(self.latents[:, :n_frames], self.noise[:, :steps], self.noise_pred[:, :steps],
                       None if self.displacements is None else self.displacements[:, :steps])


def _orthogonal_lstm_(cell: nn.LSTMCell) -> None:
    """Each of the four gate blocks gets its own orthogonal matrix; biases start at zero
    (release: models/rnn.py, init_weights)."""
    for weight in (cell.weight_ih, cell.weight_hh):
        for block in weight.data.chunk(4, dim=0):
            nn.init.orthogonal_(block)
    nn.init.zeros_(cell.bias_ih)
    nn.init.zeros_(cell.bias_hh)


class MotionGenerator(nn.Module):
    def __init__(self, latent_dim: int, *, h_dim: int = DEFAULT_H_DIM, n_pca: int = DEFAULT_N_PCA,
                 w_residual: float = DEFAULT_W_RESIDUAL, feedback: bool = False,
                 pca_components: Tensor | None = None, pca_stdev: Tensor | None = None,
                 info: dict | None = None):
        super().__init__()
        if not 0 < n_pca <= latent_dim:
            raise MocohdError(f"n_pca must be in 1..{latent_dim} (the latent size), got {n_pca}",
                              fix="lower --n-pca")
        self.latent_dim, self.h_dim, self.n_pca, self.w_residual = latent_dim, h_dim, n_pca, float(w_residual)
        self.feedback = bool(feedback)
        self.enc_cell = nn.LSTMCell(latent_dim, h_dim)
        self.cell = nn.LSTMCell(self.cell_input_dim(latent_dim, n_pca, self.feedback), h_dim)
        self.w = nn.Parameter(torch.empty(h_dim, n_pca))  # A in docs/method.md
        self.b = nn.Parameter(torch.zeros(n_pca))
        self.fc1 = nn.Linear(2 * h_dim, latent_dim)
        self.fc2 = nn.Linear(latent_dim, latent_dim)
        # Until real statistics are set, the basis is the identity's first rows with unit scale.
        self.register_buffer("pca_components", torch.eye(latent_dim)[:n_pca].clone())
        self.register_buffer("pca_stdev", torch.ones(n_pca))
        self.info: dict = dict(info or {})
        self.reset_parameters()
        if pca_components is not None:
            self.set_pca(pca_components, pca_stdev)

    @staticmethod
    def cell_input_dim(latent_dim: int, n_pca: int, feedback: bool) -> int:
        """The recurrent cell reads the motion code, and with feedback the walk's displacement so far."""
        return latent_dim + (n_pca if feedback else 0)

    def reset_parameters(self) -> None:
        """The release's init (models/rnn.py, init_weights), except the MI head's biases, which start
        at zero where the release leaves PyTorch's U(-1/sqrt(fan_in), 1/sqrt(fan_in)): a deliberate
        difference, measured (docs/method.md, "Deliberate differences from the release")."""
        _orthogonal_lstm_(self.enc_cell)
        _orthogonal_lstm_(self.cell)
        nn.init.normal_(self.w, 0.0, 0.02)
        nn.init.zeros_(self.b)
        for linear in (self.fc1, self.fc2):
            nn.init.orthogonal_(linear.weight)
            nn.init.zeros_(linear.bias)

    def set_pca(self, components: Tensor, stdev: Tensor) -> None:
        """Install PCA statistics; extra components beyond n_pca are dropped."""
        if components.shape[1] != self.latent_dim or components.shape[0] < self.n_pca:
            raise MocohdError(f"PCA components of shape {tuple(components.shape)} do not fit "
                              f"n_pca={self.n_pca}, latent_dim={self.latent_dim}")
        self.pca_components.copy_(components[: self.n_pca])
        self.pca_stdev.copy_(stdev[: self.n_pca])

    @property
    def basis(self) -> Tensor:
        """diag(s) P: [n_pca, D]."""
        return self.pca_stdev[:, None] * self.pca_components

    def draw_noise(self, batch: int, n_frames: int, rng: torch.Generator | None = None) -> Tensor:
        """Motion codes [B, T-1, D], drawn on the generator's device and moved to the model's."""
        device = rng.device if rng is not None else self.w.device
        noise = torch.randn(batch, max(n_frames - 1, 0), self.latent_dim, generator=rng, device=device)
        return noise.to(self.w.device)

    def rollout(self, w0: Tensor, n_frames: int, noise: Tensor | None = None, *,
                rng: torch.Generator | None = None) -> Rollout:
        if n_frames < 1:
            raise MocohdError(f"a video needs at least one frame, got n_frames={n_frames}")
        batch = w0.shape[0]
        if noise is None:
            noise = self.draw_noise(batch, n_frames, rng)
        elif noise.shape != (batch, n_frames - 1, self.latent_dim):
            raise ValueError(f"noise must have shape {(batch, n_frames - 1, self.latent_dim)}, got {tuple(noise.shape)}")
        noise = noise.to(w0.dtype)
        h, c = self.enc_cell(w0)
        basis = self.basis.to(w0.dtype)
        latents, states, walked = [w0], [], []
        # w_t - w_0 = w_residual * sum of the steps, times diag(s) P: in PCA units (P's rows orthonormal) that is
        # the scaled running sum, kept in fp32 whatever the latents' precision (in bf16 small steps would round
        # away over a long walk); the feedback reads it and the losses get all of it (Rollout.displacements)
        displacement = torch.zeros(batch, self.n_pca, device=w0.device, dtype=torch.float32)
        for t in range(n_frames - 1):  # the recurrence is sequential in time by nature
            cell_input = (torch.cat([noise[:, t], displacement.to(noise.dtype)], dim=1) if self.feedback
                          else noise[:, t])
            h, c = self.cell(cell_input, (h, c))
            states.append(torch.cat([h, c], dim=1))
            step = torch.tanh(h @ self.w + self.b)
            latents.append(latents[-1] + self.w_residual * (step @ basis))
            displacement = displacement + self.w_residual * step.float()
            walked.append(displacement)
        latents = torch.stack(latents, dim=1)
        displacements = (torch.stack(walked, dim=1) if walked
                         else w0.new_zeros(batch, 0, self.n_pca, dtype=torch.float32))
        if states:
            hc = torch.stack(states, dim=1)
            noise_pred = self.fc2(torch.relu(self.fc1(hc)))
        else:
            noise_pred = noise.new_zeros(noise.shape)
        return Rollout(latents, noise, noise_pred, displacements)

    def forward(self, w0: Tensor, n_frames: int, noise: Tensor | None = None, *,
                rng: torch.Generator | None = None) -> Tensor:
        return self.rollout(w0, n_frames, noise, rng=rng).latents

    # -- files ---------------------------------------------------------------------------------
    def architecture(self) -> dict:
        return {"latent_dim": self.latent_dim, "h_dim": self.h_dim, "n_pca": self.n_pca,
                "w_residual": self.w_residual, "feedback": self.feedback}

    def save(self, path: str | Path, **metadata) -> Path:
        """One .safetensors file: weights, PCA basis and scales, and metadata (JSON strings)."""
        info = {**self.info, **metadata}
        meta = {"format": FORMAT_TAG, "format_version": FORMAT_VERSION, **self.architecture(),
                **{k: v for k, v in info.items() if k not in _ARCH_KEYS}}
        return write_safetensors(path, self.state_dict(), meta)


def mutual_information_loss(noise: Tensor, noise_pred: Tensor) -> Tensor:
    """L_mi = -mean cos(eps_hat_t, eps_t): keeps the motion codes recoverable (no collapse)."""
    if noise.shape[1] == 0:
        return noise.new_zeros(())
    return -nn.functional.cosine_similarity(noise_pred, noise, dim=-1).mean()


def parse_motion_metadata(raw: dict[str, str], path: Path) -> dict:
    """A motion file's metadata, decoded and checked against METADATA_FIELDS (free-form extras,
    such as the training config, pass through decoded)."""
    if raw.get("format") != FORMAT_TAG:
        raise MocohdError("not a mocohd motion model (no 'format: mocohd-motion' metadata)", path=path,
                          fix=NOT_MOTION_FIX)
    info = decode_metadata(raw, source=path, what="motion model metadata")
    info["format"] = raw["format"]  # a string, whatever JSON makes of it
    checked = read_fields(info, METADATA_FIELDS, source=path, what="motion model metadata")
    for key, value in checked.items():  # a JSON null counts as absent: readers use their defaults
        if value is None:
            info.pop(key, None)
        else:
            info[key] = value
    if info["n_pca"] > info["latent_dim"]:
        raise MocohdError(f"motion model metadata: n_pca ({info['n_pca']}) exceeds latent_dim ({info['latent_dim']})",
                          path=path, fix="the file is damaged or was edited; re-export it")
    return info


def _check_tensor_shapes(info: dict, tensors: dict[str, Tensor], path: Path) -> None:
    """The sizes the metadata claims must be those of the tensors actually in the file, checked
    before a model of that size is built (a forged h_dim must not allocate gigabytes)."""
    latent, h, n_pca = info["latent_dim"], info["h_dim"], info["n_pca"]
    cell_input = MotionGenerator.cell_input_dim(latent, n_pca, info["feedback"])
    expected = {"cell.weight_hh": (4 * h, h), "cell.weight_ih": (4 * h, cell_input), "enc_cell.weight_ih": (4 * h, latent),
                "w": (h, n_pca), "pca_components": (n_pca, latent), "fc2.weight": (latent, latent)}
    for key, shape in expected.items():
        found = tensors.get(key)
        if found is None or tuple(found.shape) != shape:
            got = "missing" if found is None else f"{list(found.shape)}"
            raise MocohdError(f"motion model tensor {key!r} is {got}, but its metadata (latent_dim {latent}, h_dim {h}, "
                              f"n_pca {n_pca}) needs {list(shape)}", path=path,
                              fix="the file is damaged or was edited; re-export it")
    for key, tensor in tensors.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise MocohdError(f"motion model tensor {key!r} holds NaN or infinite values", path=path,
                              fix="the model diverged or the file is damaged; use an earlier checkpoint")


def check_backbone_match(info: dict, backbone, path: Path) -> None:
    """A motion model only makes sense in the latent space it was trained in."""
    if int(info["latent_dim"]) != backbone.latent_dim:
        raise MocohdError(
            f"this motion model walks a {info['latent_dim']}-d latent space but backbone "
            f"{backbone.name!r} has {backbone.latent_dim}-d latents",
            path=path, fix=f"use it with the backbone it was trained for ({info.get('backbone', '?')})")
    made_for = info.get("backbone_name") or info.get("backbone")
    if made_for and made_for != backbone.name and made_for != getattr(backbone, "spec", None):
        raise MocohdError(
            f"this motion model was made for backbone {made_for!r}, not {backbone.name!r}",
            path=path, fix=f"pass --backbone {made_for} with its checkpoint, or train a motion model for this backbone")
    trained_on, given = info.get("backbone_sha256"), getattr(backbone, "checkpoint_sha256", None)
    if trained_on and given and trained_on != given:
        # Same architecture, other weights (or the same weights in another file format): it runs,
        # but the motion was learned for another generator, so say so rather than stay silent.
        warnings.warn(f"{path} was trained with backbone checkpoint {info.get('backbone_checkpoint') or '?'} "
                      f"(sha256 {trained_on[:12]}...), not this one (sha256 {given[:12]}...)", MocohdWarning,
                      stacklevel=3)


def load_motion(path: str | Path, backbone=None, *, device: str | torch.device = "cpu") -> MotionGenerator:
    """Load a motion model written by `MotionGenerator.save`; with `backbone`, check they belong together.
    `example:NAME` (or the example backbone's file it resolved to elsewhere) is the shipped motion model."""
    path = Path(as_kind(path, "motion"))
    tensors, raw_meta = read_safetensors(path, what="motion model")
    info = parse_motion_metadata(raw_meta, path)
    _check_tensor_shapes(info, tensors, path)
    if backbone is not None:
        check_backbone_match(info, backbone, path)
    model = MotionGenerator(info["latent_dim"], h_dim=info["h_dim"], n_pca=info["n_pca"],
                            w_residual=info["w_residual"], feedback=info["feedback"],
                            info={k: v for k, v in info.items() if k not in _ARCH_KEYS + ("format", "format_version")})
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise MocohdError(f"motion model tensors do not match its metadata ({exc})", path=path,
                          fix="the file is damaged or was edited; re-export it") from exc
    return model.to(device)


def read_motion_info(path: str | Path) -> dict:
    """The metadata of a motion model, decoded, without loading its tensors."""
    path = require_regular_file(as_kind(path, "motion"), "motion model", fix="check the path given to --motion")
    meta = safetensors_metadata(path)
    if meta is None:
        raise MocohdError("not a readable .safetensors motion model", path=path, fix=NOT_MOTION_FIX)
    return parse_motion_metadata(meta, path)


def load_motion_and_backbone(path: str | Path, *, checkpoint: str | Path | None = None, backbone: str | None = None,
                             device: str | torch.device = "cpu", truncation: float = 1.0):
    """A motion model with the backbone it animates: (backbone, motion in eval mode, metadata).
    The checkpoint and backbone default to the ones the motion model records."""
    path = as_kind(path, "motion")  # example:NAME: the shipped motion model, not its backbone
    info = read_motion_info(path)
    if checkpoint is None:
        checkpoint = info.get("backbone_checkpoint")
        if not checkpoint:
            raise MocohdError("the motion model does not record its backbone checkpoint", path=path,
                              fix="pass --checkpoint (and --backbone)")
        if backbone is None and info.get("backbone"):
            backbone = require_registered(info["backbone"], Path(path), "backbone")
    image_generator = load_backbone(backbone, checkpoint, device=device, truncation=truncation)
    return image_generator, load_motion(path, image_generator, device=device).eval(), info
