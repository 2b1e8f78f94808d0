"""The latent encoder: a timm network that reads an image and predicts the latent (in the motion
space) the backbone would render it from. Trained by `mocohd train-encoder`
(mocohd_cli/workflows/encoder.py) on the backbone's own samples; used as the starting guess of
the inversion and as its feature network (docs/animate.md).

Prediction is in units of the latent space's spread: latent = latent_mean + latent_scale * net(x),
with the mean and spread of the backbone's latents stored in the file, so the network's outputs
are of order 1 for any backbone. Images in [-1, 1] are mapped to [0, 1] and normalised with the
architecture's mean and std (what pretrained weights expect); an architecture with a fixed input
size (ViTs) gets them resized to it.

File: one .safetensors, the network's state dict under `net.`, `latent_mean`, `latent_scale`, and
metadata: format, arch, latent_dim, image_size, backbone (name, spec, checkpoint, sha256),
truncation, training settings and final losses. An encoder loads only with the backbone it was
trained for (`check_encoder_match`).
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn
import torch.nn.functional as F

from ..infra.errors import MocohdError
from ..infra.files import (read_safetensors, require_regular_file, safetensors_metadata, sha256_of, torch_load_safely,
                           write_safetensors)
from ..infra.schema import Field, decode_metadata, read_fields

FORMAT_TAG = "mocohd-encoder"
FORMAT_VERSION = 1
DEFAULT_ARCH = "resnet18"


def create_timm(arch: str, n_outputs: int) -> nn.Module:
    import timm

    try:
        return timm.create_model(arch, pretrained=False, num_classes=n_outputs)
    except RuntimeError as exc:  # timm's "Unknown model"
        raise MocohdError(f"timm has no architecture {arch!r}",
                          fix="pass a name from timm.list_models(), e.g. --arch resnet18") from exc


def _classifier_prefixes(net: nn.Module) -> tuple[str, ...]:
    names = net.pretrained_cfg.get("classifier") or ()
    return tuple(f"{n}." for n in ([names] if isinstance(names, str) else names))


def load_pretrained(net: nn.Module, path: str | Path, arch: str) -> None:
    """Weights a user points at (.safetensors or a torch state dict, loaded without running code):
    every parameter but the classifier head must be there and fit."""
    state = (read_safetensors(path, "encoder weights")[0] if str(path).endswith(".safetensors")
             else torch_load_safely(path, "encoder weights"))
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise MocohdError("these weights are not a state dict", path=path, fix=f"pass weights of timm's {arch}")
    head = _classifier_prefixes(net)
    own = net.state_dict()
    state = {k: v for k, v in state.items() if not k.startswith(head)}
    wrong = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    missing = [k for k in own if not k.startswith(head) and k not in state]
    if wrong or missing:
        example = (wrong or missing)[0]
        raise MocohdError(f"the weights do not fit timm's {arch} ({len(missing)} missing, {len(wrong)} of another "
                          f"shape, e.g. {example})", path=path, fix=f"pass weights of {arch}, or the --arch they belong to")
    net.load_state_dict(state, strict=False)


class LatentEncoder(nn.Module):
    def __init__(self, arch: str, latent_dim: int, image_size: int, *, latent_mean: Tensor | None = None,
                 latent_scale: float = 1.0, info: dict | None = None):
        super().__init__()
        self.arch, self.latent_dim, self.image_size = arch, int(latent_dim), int(image_size)
        self.net = create_timm(arch, self.latent_dim)
        cfg = self.net.pretrained_cfg
        self.input_size = int(cfg["input_size"][-1]) if cfg.get("fixed_input_size") else None
        self.register_buffer("latent_mean", torch.zeros(latent_dim) if latent_mean is None
                             else latent_mean.detach().float().clone())
        self.register_buffer("latent_scale", torch.tensor(float(latent_scale)))
        self.register_buffer("pixel_mean", torch.tensor(cfg.get("mean", (0.5,) * 3)).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("pixel_std", torch.tensor(cfg.get("std", (0.5,) * 3)).view(1, 3, 1, 1),
                             persistent=False)
        self.info: dict = dict(info or {})

    def prepare(self, images: Tensor) -> Tensor:
        """Images [N, 3, H, W] in [-1, 1] -> the network's input."""
        x = (images.float() + 1) / 2
        if self.input_size is not None and x.shape[-1] != self.input_size:
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False)
        return (x - self.pixel_mean) / self.pixel_std

    def _features(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """(the network's last feature map, its intermediate maps [N, C, h, w])."""
        if hasattr(self.net, "forward_intermediates"):
            try:
                last, maps = self.net.forward_intermediates(x)
                return last, [m for m in maps if m.dim() == 4]
            except (NotImplementedError, TypeError):
                pass
        last = self.net.forward_features(x)
        return last, [last] if last.dim() == 4 else []

    def encode(self, images: Tensor) -> tuple[Tensor, list[Tensor]]:
        """(predicted latents in units of the spread [N, D], feature maps) in one pass."""
        last, maps = self._features(self.prepare(images))
        return self.net.forward_head(last), maps

    def to_latent(self, units: Tensor) -> Tensor:
        return self.latent_mean + self.latent_scale * units

    def forward(self, images: Tensor) -> Tensor:
        """Images [N, 3, H, W] in [-1, 1] -> latents [N, D] in the motion space."""
        return self.to_latent(self.encode(images)[0])

    def feature_maps(self, images: Tensor) -> list[Tensor]:
        """The network's intermediate feature maps of images in [-1, 1] (the inversion's feature term)."""
        return self._features(self.prepare(images))[1]

    # -- files -------------------------------------------------------------------------------
    def save(self, path: str | Path, **metadata) -> Path:
        meta = {"format": FORMAT_TAG, "format_version": FORMAT_VERSION, "arch": self.arch,
                "latent_dim": self.latent_dim, "image_size": self.image_size, **self.info, **metadata}
        return write_safetensors(path, self.state_dict(), meta)


# What an encoder file's metadata may hold, typed and bounded (mocohd_cli/infra/schema.py).
METADATA_FIELDS = (
    Field("format", str, choices=(FORMAT_TAG,)), Field("format_version", int, lo=1, hi=FORMAT_VERSION),
    Field("arch", str, hi=200), Field("latent_dim", int, lo=1, hi=65_536), Field("image_size", int, lo=8, hi=4096),
    Field("backbone", str, hi=1000, default=None), Field("backbone_sha256", str, hi=64, default=None),
    Field("backbone_checkpoint", str, default=None),
)


def read_encoder_info(path: str | Path) -> dict:
    path = require_regular_file(path, "encoder", fix="check the path given to --encoder")
    meta = safetensors_metadata(path)
    if meta is None or meta.get("format") != FORMAT_TAG:
        raise MocohdError("not a mocohd encoder (no 'format: mocohd-encoder' metadata)", path=path,
                          fix="pass a file written by `mocohd train-encoder`")
    info = decode_metadata(meta, source=path, what="encoder metadata")
    info["format"] = meta["format"]
    checked = read_fields(info, METADATA_FIELDS, source=path, what="encoder metadata")
    return {**info, **{k: v for k, v in checked.items() if v is not None}}


def check_encoder_match(info: dict, backbone, path: Path) -> None:
    """An encoder predicts latents of one generator: refuse it for any other (architecture, size or
    weights)."""
    retrain = f"train one for this backbone: mocohd train-encoder --checkpoint {backbone.checkpoint_path or 'C'}"
    made_for = info.get("backbone")
    if made_for and made_for not in (backbone.name, getattr(backbone, "spec", None)):
        raise MocohdError(f"this encoder was trained for backbone {made_for!r}, not {backbone.name!r}", path=path,
                          fix=retrain)
    if int(info["latent_dim"]) != backbone.latent_dim:
        raise MocohdError(f"this encoder predicts {info['latent_dim']}-d latents but the backbone's are "
                          f"{backbone.latent_dim}-d", path=path, fix=retrain)
    if int(info["image_size"]) != backbone.resolution:
        raise MocohdError(f"this encoder reads {info['image_size']} px images but the backbone renders "
                          f"{backbone.resolution} px", path=path, fix=retrain)
    trained_on, given = info.get("backbone_sha256"), getattr(backbone, "checkpoint_sha256", None)
    if trained_on and given and trained_on != given:
        raise MocohdError(f"this encoder was trained for backbone checkpoint {info.get('backbone_checkpoint') or '?'} "
                          f"(sha256 {trained_on[:12]}...), not this one (sha256 {given[:12]}...)", path=path,
                          fix=retrain)


def load_encoder(path: str | Path, backbone=None, *, device: str | torch.device = "cpu") -> LatentEncoder:
    """An encoder written by `LatentEncoder.save`, in eval mode; with `backbone`, checked against it."""
    path = Path(path)
    info = read_encoder_info(path)
    if backbone is not None:
        check_encoder_match(info, backbone, path)
    tensors, _ = read_safetensors(path, "encoder")
    keep = {k: v for k, v in info.items() if k not in ("format", "format_version", "arch", "latent_dim", "image_size")}
    encoder = LatentEncoder(str(info["arch"]), int(info["latent_dim"]), int(info["image_size"]), info=keep)
    try:
        encoder.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise MocohdError(f"encoder tensors do not match its metadata ({exc})", path=path,
                          fix="the file is damaged or was edited; train it again") from exc
    return encoder.to(device).eval()


def backbone_record(backbone) -> dict:
    """What an encoder stores about the backbone it was trained for."""
    checkpoint = getattr(backbone, "checkpoint_path", None)
    return {"backbone": backbone.name, "backbone_spec": getattr(backbone, "spec", backbone.name),
            "backbone_checkpoint": checkpoint, "backbone_sha256": getattr(backbone, "checkpoint_sha256", None)
            or (sha256_of(checkpoint) if checkpoint else None), "truncation": backbone.truncation}
