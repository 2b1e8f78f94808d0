"""The feature networks the metrics use, and where their files come from.

Detectors are TorchScript files (loaded with torch.jit.load: no pickle runs code), named
`i3d` (FVD, KVD), `inception` (FID, KID) and `c3d` (video Inception Score), found in this order:
  1. `--detector NAME=PATH`;
  2. $MOCOHD_CACHE/detectors/<file>;
  3. a download from the public address StyleGAN-V uses, checked against the sha256 below when
     one is known, into that cache.
Offline and missing: one error naming the file, the address and where to put it.

Each is called as StyleGAN-V calls it (src/metrics/*.py): uint8 input at the videos' own
resolution; the networks resize and rescale inside.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
import warnings

import torch
from torch import Tensor
import torch.nn.functional as F

from ..infra.download import download
from ..infra.errors import MocohdError
from ..infra.files import cache_dir, read_safetensors, sha256_of, torch_load_safely
from ..infra.hub import resolve as resolve_reference
from ..models.identity import read_identity_encoder


@dataclass(frozen=True)
class DetectorSpec:
    name: str
    file: str
    url: str
    sha256: str | None  # None: no published hash known; the downloaded file's hash is recorded instead
    sha256_source: str
    call: str  # how it is called, for the docs and the protocol
    temporal: bool  # takes clips [B, 3, T, H, W] rather than frames [B, 3, H, W]
    kwargs: tuple[tuple[str, bool], ...] = ()


DETECTORS = {spec.name: spec for spec in (
    DetectorSpec("i3d", "i3d_torchscript.pt", "https://www.dropbox.com/s/ge9e5ujwgetktms/i3d_torchscript.pt?dl=1",
                 "bec6519f66ea534e953026b4ae2c65553c17bf105611c746d904657e5860a5e2",
                 "a third-party mirror's Git LFS record (51,235,320 bytes); no official hash is published",
                 "detector(videos, rescale=True, resize=True, return_features=True): uint8 [B,3,T,H,W] -> [B,400]",
                 temporal=True, kwargs=(("rescale", True), ("resize", True), ("return_features", True))),
    DetectorSpec("inception", "inception-2015-12-05.pt",
                 "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt",
                 "f58cb9b6ec323ed63459aa4fb441fe750cfe39fafad6da5cb504a16f19e958f4",
                 "a third-party mirror's Git LFS record (95,607,719 bytes); no official hash is published",
                 "detector(images, return_features=True): uint8 [B,3,H,W] -> [B,2048]",
                 temporal=False, kwargs=(("return_features", True),)),
    DetectorSpec("c3d", "c3d_ucf101.pt", "https://www.dropbox.com/s/jxpu7avzdc9n97q/c3d_ucf101.pt?dl=1", None,
                 "none known: the downloaded file's sha256 is recorded in every result instead",
                 "detector(videos): uint8 [B,3,16,H,W] -> class probabilities [B,101]", temporal=True),
)}


def load_torchscript(path: Path, device: torch.device) -> torch.jit.ScriptModule:
    """torch.jit.load (TorchScript archives hold code and tensors, no pickled objects). The detectors
    are published as TorchScript, so torch's advice to move away from it does not apply here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, message=".*jit.*")
        return torch.jit.load(str(path), map_location=device).eval()


def detector_dir() -> Path:
    return cache_dir() / "detectors"


def parse_detector_options(options: list[str] | None) -> dict[str, Path]:
    """["i3d=/data/i3d.pt", ...] -> {"i3d": Path(...)}, refusing unknown names and missing files."""
    paths = {}
    for option in options or []:
        name, sep, path = option.partition("=")
        if not sep or not path:
            raise MocohdError(f"cannot read --detector {option!r}", fix="write NAME=PATH, e.g. i3d=/data/i3d.pt")
        path = resolve_reference(path)  # NAME=hf://OWNER/REPO/FILE works too
        if name not in DETECTORS:
            raise MocohdError(f"unknown detector {name!r} in --detector", fix=f"use one of {', '.join(DETECTORS)}")
        if not Path(path).is_file():
            raise MocohdError(f"detector file for {name} not found", path=path, fix="check the path in --detector")
        paths[name] = Path(path)
    return paths


def resolve_detector(name: str, overrides: dict[str, Path] | None = None) -> tuple[Path, str]:
    """The detector's file and its sha256 (see the module docstring for the order)."""
    spec = DETECTORS[name]
    if overrides and name in overrides:
        return overrides[name], sha256_of(overrides[name])
    cached = detector_dir() / spec.file
    if cached.is_file():
        return cached, sha256_of(cached)
    digest = download(spec.url, cached, sha256=spec.sha256, what=f"the {name} detector ({spec.file})",
                      instead=f"--detector {name}=PATH")
    return cached, digest


class Detector:
    """A loaded TorchScript detector, called the way its metrics need."""

    def __init__(self, name: str, path: Path, sha256: str, device: torch.device):
        self.spec, self.path, self.sha256, self.device = DETECTORS[name], path, sha256, device
        try:
            self.module = load_torchscript(path, device)
        except Exception as exc:  # torch raises several types for files that are no TorchScript
            raise MocohdError(f"not a TorchScript {name} detector ({type(exc).__name__})", path=path,
                              fix=f"pass the {self.spec.file} file StyleGAN-V uses (--detector {name}=PATH)") from exc

    @torch.no_grad()
    def __call__(self, batch: Tensor) -> Tensor:
        """uint8 clips [B, T, 3, H, W] (temporal detectors) or frames [B, 3, H, W] -> features [B, F]."""
        if batch.dtype != torch.uint8:
            raise TypeError(f"detectors take uint8 input, got {batch.dtype}")
        x = batch.to(self.device)
        if self.spec.temporal:
            x = x.permute(0, 2, 1, 3, 4).contiguous()  # [B, 3, T, H, W]
        out = self.module(x, **dict(self.spec.kwargs))
        return out.float().cpu()


def load_detector(name: str, device: torch.device, overrides: dict[str, Path] | None = None) -> Detector:
    path, digest = resolve_detector(name, overrides)
    return Detector(name, path, digest, device)


IDENTITY_PREFIX = "identity:"
# the shipped examples' identity encoders: assets/identity_<example>_<size>.safetensors (workflows/builtin.py)
_ASSETS = Path(__file__).resolve().parents[1] / "assets"


class Embedder:
    """ACD's frame embedder: uint8 frames [B, 3, H, W] -> features [B, F]. Always trained weights, so
    the same videos give the same number every run.

    A TorchScript file is called on the uint8 frames as they are; a timm model (`timm:NAME` with
    --embedder-weights FILE: timm's random initialisation alone is refused) gets them resized to its
    input size and normalised with its mean and std, and returns the features before its classifier;
    `identity:NAME` (a shipped example's identity encoder, e.g. identity:faces) or `identity:FILE`
    (one from training, mocohd_cli/models/identity.py) gets them in [-1, 1] and returns unit-length
    identity embeddings."""

    def __init__(self, spec: str, weights: str | None, device: torch.device):
        self.device, self.description = device, spec
        if spec.startswith(IDENTITY_PREFIX):
            path = _identity_file(spec[len(IDENTITY_PREFIX):])
            self.module = read_identity_encoder(path)[0].to(device)
            self.sha256, self.input_size, self.description = sha256_of(path), None, f"{spec} ({path.name})"
            self.scale = True
            return
        self.scale = False
        if spec.startswith("timm:"):
            if not weights:
                raise MocohdError(f"--embedder {spec} without --embedder-weights is a randomly initialised network: "
                                  "its ACD would change every run", fix=f"pass --embedder-weights FILE (weights of "
                                  f"{spec[len('timm:'):]}, .safetensors or a state dict), --embedder identity:faces "
                                  "(the shipped example's identity encoder) or a TorchScript file")
            self.module, self.sha256 = _timm_embedder(spec[len("timm:"):], weights), None
            if weights:
                self.sha256 = sha256_of(weights)
            self.module = self.module.to(device).eval()
            import timm.data

            config = timm.data.resolve_data_config({}, model=self.module)
            self.input_size = config["input_size"][-1]
            self.mean = torch.tensor(config["mean"], device=device).view(1, 3, 1, 1)
            self.std = torch.tensor(config["std"], device=device).view(1, 3, 1, 1)
        else:
            path = Path(spec)
            if not path.is_file():
                raise MocohdError("embedder file not found", path=path,
                                  fix="pass a TorchScript file, or timm:NAME (e.g. timm:resnet50)")
            try:
                self.module = load_torchscript(path, device)
            except Exception as exc:  # torch raises several types for files that are no TorchScript
                raise MocohdError(f"not a TorchScript embedder ({type(exc).__name__})", path=path,
                                  fix="save one with torch.jit.save(torch.jit.script(model), PATH)") from exc
            self.sha256, self.input_size = sha256_of(path), None

    @torch.no_grad()
    def __call__(self, frames: Tensor) -> Tensor:
        x = frames.to(self.device)
        if self.scale:
            x = x.float() / 127.5 - 1.0
        if self.input_size is None:
            return self.module(x).float().cpu()
        x = F.interpolate(x.float() / 255.0, size=(self.input_size, self.input_size), mode="bilinear",
                          align_corners=False, antialias=True)
        return self.module((x - self.mean) / self.std).float().flatten(1).cpu()


def _identity_file(name: str) -> Path:
    """identity:NAME -> the shipped identity encoder of example NAME; identity:FILE -> that file."""
    shipped = {p.name.split("_")[1]: p for p in sorted(_ASSETS.glob("identity_*_*.safetensors"))}
    if name in shipped:
        return shipped[name]
    path = Path(resolve_reference(name))
    if not path.is_file():
        raise MocohdError(f"no shipped identity encoder {name!r} and no such file", path=path,
                          fix=f"use identity:{' or identity:'.join(shipped) or 'FILE'}, or identity:FILE of an "
                              "identity encoder file (`mocohd train --w-identity` trains and caches one)")
    return path


def _timm_embedder(name: str, weights: str | None):
    import timm

    try:
        model = timm.create_model(name, pretrained=False, num_classes=0)
    except RuntimeError as exc:
        raise MocohdError(f"timm has no model {name!r}", fix="see timm.list_models() for names") from exc
    if weights:
        state = (read_safetensors(weights, "embedder weights")[0] if str(weights).endswith(".safetensors")
                 else torch_load_safely(weights, "embedder weights"))
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        missing, _ = model.load_state_dict(state, strict=False)
        if missing:
            raise MocohdError(f"the weights do not fit timm's {name} ({len(missing)} missing, e.g. {missing[0]})",
                              path=weights, fix=f"pass weights of {name}")
    return model


def load_embedder(spec: str, weights: str | None, device: torch.device) -> Embedder:
    return Embedder(spec, weights, device)
