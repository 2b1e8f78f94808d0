"""The image-generator contract every backbone plugin implements, and plugin discovery.

A backbone is a frozen, pre-trained image generator. Plugins register a subclass of
`ImageGenerator` under the entry-point group ``mocohd.backbones``; the built-in
StyleGAN2 and BigGAN backbones register the same way a third-party package does.
"""
from __future__ import annotations

import importlib
import importlib.metadata as metadata
import importlib.util
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from ..infra.errors import MocohdError
from ..infra.hub import resolve as resolve_reference
from ..infra.files import is_regular_file, require_regular_file, safetensors_metadata, sha256_of

ENTRY_POINT_GROUP = "mocohd.backbones"
NOISE_MODES = ("random", "const", "none")
BACKBONE_HELP = "Backbone: registered name (`mocohd backbones`), module:Class or file.py:Class."


class ImageGenerator(nn.Module):
    """A frozen image generator whose latent space the motion generator walks.

    Subclasses set `name`, `description`, `latent_dim`, `z_dim`, `resolution` and
    `condition_dim`, and implement `from_checkpoint`, `mapping` and `synthesize`.
    """

    name: str = ""
    description: str = ""
    latent_dim: int
    z_dim: int
    resolution: int
    condition_dim: int = 0
    # Truncation of the content codes, set once by load_backbone(truncation=...) and applied by
    # `mapping` (StyleGAN2: towards the mean w; BigGAN: scales z and picks its batch-norm statistics).
    truncation: float = 1.0
    # True when `synthesize` depends on the truncation too (BigGAN), so that a replayed latents file
    # (`mocohd sample --latents`) renders differently under another --truncation.
    truncation_in_synthesis: bool = False
    # How content codes are interpolated (`mocohd sample --lerp`): "linear" suits a learned space
    # such as StyleGAN2's W (not centred on 0); "slerp" suits a Gaussian z space such as BigGAN's,
    # where a straight line between two codes passes near the origin (norm ~1/sqrt(2) of theirs
    # mid-way: bland, untypical inputs) while the great circle keeps the norm the generator saw.
    content_interpolation: str = "linear"
    # Set by load_backbone: where the weights came from, so motion models can check.
    checkpoint_path: str | None = None
    checkpoint_sha256: str | None = None

    @classmethod
    def from_checkpoint(cls, path: str | Path, **options) -> "ImageGenerator":
        raise NotImplementedError

    @classmethod
    def recognizes(cls, path: Path) -> bool:
        """True if `path` looks like a checkpoint of this backbone (cheap; no full load)."""
        return False

    def mapping(self, z: Tensor) -> Tensor:
        """z [N, z_dim] -> content codes [N, latent_dim] in the motion space, truncated by `self.truncation`."""
        raise NotImplementedError

    def synthesize(self, latents: Tensor, *, condition: Tensor | None = None, noise: str = "random",
                   rng: torch.Generator | None = None) -> Tensor:
        raise NotImplementedError

    def sample_latent(self, n: int, *, rng: torch.Generator | None = None) -> Tensor:
        # Draw where the generator lives (a CPU generator gives the same draws on any device).
        device = rng.device if rng is not None else self.device
        z = torch.randn(n, self.z_dim, generator=rng, device=device).to(self.device)
        return self.mapping(z)

    def sample_condition(self, n: int, classes: list[int] | None = None, *,
                         rng: torch.Generator | None = None) -> Tensor | None:
        """Per-video condition ([n, condition_dim] one-hot) or None for unconditional backbones.

        `classes` cycles over the videos; without it classes are drawn at random.
        """
        if self.condition_dim == 0:
            if classes:
                raise MocohdError(f"backbone {self.name!r} is unconditional: it takes no --class")
            return None
        if classes:
            bad = [c for c in classes if not 0 <= c < self.condition_dim]
            if bad:
                raise MocohdError(f"class {bad[0]} is out of range for backbone {self.name!r}",
                                  fix=f"use a class in 0..{self.condition_dim - 1}")
            index = torch.tensor([classes[i % len(classes)] for i in range(n)])
        else:
            index = torch.randint(self.condition_dim, (n,), generator=rng)
        return nn.functional.one_hot(index, self.condition_dim).float().to(self.device)

    def export_config(self) -> dict:
        """Everything needed to rebuild the architecture (stored in .safetensors metadata)."""
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        for tensor in self.parameters():
            return tensor.device
        for tensor in self.buffers():
            return tensor.device
        return torch.device("cpu")

    def set_truncation(self, value: float) -> None:
        """The one way a truncation reaches a backbone (load_backbone, the trainer)."""
        self.truncation = check_truncation(value)

    def freeze(self) -> "ImageGenerator":
        """No parameter gets gradients; gradients still flow through synthesize to the latents."""
        self.requires_grad_(False)
        self.eval()
        return self

    @staticmethod
    def check_noise_mode(noise: str) -> None:
        if noise not in NOISE_MODES:
            raise MocohdError(f"unknown noise mode {noise!r}", fix="use random, const or none")


@dataclass
class BackboneEntry:
    """One registered backbone: what `mocohd backbones` lists."""

    name: str
    target: str
    distribution: str
    description: str
    cls: type[ImageGenerator] | None
    error: str | None


def _load_entry(ep: metadata.EntryPoint) -> BackboneEntry:
    dist = ep.dist.name if getattr(ep, "dist", None) is not None else "?"
    try:
        cls = ep.load()
        if not (isinstance(cls, type) and issubclass(cls, ImageGenerator)):
            raise TypeError(f"{ep.value} is not a subclass of mocohd_cli.ImageGenerator")
        return BackboneEntry(ep.name, ep.value, dist, cls.description or "", cls, None)
    except Exception as exc:  # a broken plugin must never break the others
        return BackboneEntry(ep.name, ep.value, dist, "", None, f"{type(exc).__name__}: {exc}")


def discover_backbones() -> dict[str, BackboneEntry]:
    """All backbones registered under the entry-point group, broken ones included."""
    entries: dict[str, BackboneEntry] = {}
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in entries:  # first registration wins (duplicate dists in editable installs)
            entries[ep.name] = _load_entry(ep)
    return dict(sorted(entries.items()))


def _import_from_file(file: Path, attr: str) -> object:
    if not file.exists():
        raise MocohdError("backbone file not found", path=file, fix="use path/to/file.py:ClassName")
    module_name = f"mocohd_user_backbone_{abs(hash(str(file.resolve())))}"
    spec = importlib.util.spec_from_file_location(module_name, file)
    if spec is None or spec.loader is None:
        raise MocohdError("cannot import this file as Python", path=file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return getattr(module, attr)


def is_code_reference(spec: str) -> bool:
    """"module:Class" or "file.py:Class": a backbone named by its code, not by a registered name."""
    return ":" in spec


def require_registered(spec: str, source: Path, key: str) -> str:
    """A backbone named by a file's metadata (not by the person at the command line) must be a
    registered one: a downloaded file must never choose which code runs."""
    if is_code_reference(spec):
        raise MocohdError(f"its metadata ({key}) names backbone code {spec[:200]!r}, which is not a registered "
                          "backbone; mocohd never imports code that a file names", path=source,
                          fix=f"if you trust that code, pass --backbone {spec[:200]} yourself")
    return spec


def resolve_backbone_class(spec: str) -> type[ImageGenerator]:
    """A registered name, "package.module:Class" or "path/to/file.py:Class" -> the class.
    Only for specs the user typed: metadata goes through `require_registered` first."""
    if is_code_reference(spec):
        target, _, attr = spec.rpartition(":")
        try:
            if target.endswith(".py") or "/" in target or "\\" in target:
                obj = _import_from_file(Path(target), attr)
            else:
                obj = getattr(importlib.import_module(target), attr)
        except MocohdError:
            raise
        except Exception as exc:
            raise MocohdError(f"cannot import backbone {spec!r}: {type(exc).__name__}: {exc}",
                              fix="check the module path and class name (module:Class or file.py:Class)") from exc
        if not (isinstance(obj, type) and issubclass(obj, ImageGenerator)):
            raise MocohdError(f"{spec!r} is not a subclass of mocohd_cli.ImageGenerator",
                              fix="a backbone class must subclass mocohd_cli.models.backbone.ImageGenerator")
        return obj
    entries = discover_backbones()
    if spec not in entries:
        known = ", ".join(entries) or "none"
        raise MocohdError(f"unknown backbone {spec!r} (installed: {known})",
                          fix="run `mocohd backbones` to list them, or pass module:Class / file.py:Class")
    entry = entries[spec]
    if entry.cls is None:
        raise MocohdError(f"backbone {spec!r} failed to import: {entry.error}",
                          fix=f"repair or reinstall the distribution {entry.distribution!r}")
    return entry.cls


def infer_backbone_name(checkpoint: str | Path) -> str:
    """Which registered backbone a checkpoint belongs to: mocohd's own metadata first, then each
    plugin's `recognizes`."""
    path = Path(checkpoint)
    if not path.exists():
        raise MocohdError("checkpoint not found", path=path, fix="check the path given to --checkpoint")
    if not (path.is_dir() or is_regular_file(path)):  # a FIFO or device would block a plugin's `recognizes`
        require_regular_file(path, "checkpoint")
    if path.is_file():
        meta = safetensors_metadata(path)
        if meta and "mocohd_backbone" in meta:
            return require_registered(str(meta["mocohd_backbone"]), path, "mocohd_backbone")
    matches = []
    for name, entry in discover_backbones().items():
        if entry.cls is None:
            continue
        try:
            if entry.cls.recognizes(path):
                matches.append(name)
        except MocohdError:
            raise  # the file itself is refused (hostile pickle, unreadable): say so, not "unknown format"
        except Exception:
            continue
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise MocohdError("cannot tell which backbone this checkpoint belongs to",
                          path=path, fix="name it with --backbone (see `mocohd backbones`)")
    raise MocohdError(f"several backbones recognise this checkpoint ({', '.join(matches)})",
                      path=path, fix="name one with --backbone")


def _require_finite(model: nn.Module, path: Path) -> None:
    """NaN or infinite weights make black or grey videos, never an error later: refuse them here."""
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise MocohdError(f"the backbone's tensor {name!r} holds NaN or infinite values", path=path,
                              fix="the checkpoint is damaged (or its training diverged); use another one")


def check_truncation(value: float) -> float:
    """The one check of a truncation value (the settings of every command call it, and set_truncation)."""
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise MocohdError(f"--truncation must be a finite number, got {value}",
                          fix="pass e.g. --truncation 0.7 (1 = no truncation)")
    return float(value)


def load_backbone(spec: str | None = None, checkpoint: str | Path | None = None, *,
                  device: str | torch.device = "cpu", truncation: float = 1.0, **options) -> ImageGenerator:
    """Resolve `spec` (or infer it from `checkpoint`), load the weights, set the content codes'
    truncation, freeze the result. `options` go to `from_checkpoint` as they are."""
    check_truncation(truncation)  # before anything loads
    checkpoint = resolve_reference(checkpoint)  # hf://, zoo:, example: (e.g. recorded in a motion file)
    if spec is None:
        if checkpoint is None:
            raise MocohdError("neither a backbone nor a checkpoint was given",
                              fix="pass --checkpoint PATH (and --backbone NAME if it cannot be inferred)")
        spec = infer_backbone_name(checkpoint)
    cls = resolve_backbone_class(spec)
    if checkpoint is not None:
        path = Path(checkpoint)
        if not path.exists():
            raise MocohdError("checkpoint not found", path=path, fix="check the path given to --checkpoint")
        try:
            model = cls.from_checkpoint(path, **options)
        except MocohdError:
            raise
        except Exception as exc:  # chained: `mocohd --debug` shows this exception's traceback under the error
            raise MocohdError(f"backbone {spec!r} could not load this checkpoint ({type(exc).__name__}: {exc})",
                              path=path, fix="check that the checkpoint belongs to this backbone") from exc
        _require_finite(model, path)
        model.checkpoint_path = str(path)
        model.checkpoint_sha256 = sha256_of(path)
    else:
        model = cls(**options)
    model.spec = spec
    model.set_truncation(truncation)
    return model.freeze().to(device)
