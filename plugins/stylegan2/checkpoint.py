"""Reading and writing StyleGAN2 generator checkpoints.

Two formats:
- rosinality/stylegan2-pytorch: torch.save of a dict with 'g_ema' (a state dict) and often
  'latent_avg', 'g', 'd', ...; or a bare generator state dict. Loaded with weights_only=True.
  Size, style_dim, n_mlp and every channel width are inferred from the tensor shapes.
- mocohd .safetensors: the state dict plus 'latent_avg'; metadata mocohd_backbone="stylegan2"
  and "config" (JSON of StyleGAN2Generator.export_config()).
- NVIDIA StyleGAN2-ADA / StyleGAN3 .pkl: converted by mocohd_plugins.stylegan2.nvidia on top of the core's restricted unpickler (mocohd_cli.infra.safe_pickle)
  and mapped to the rosinality layout.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
import re
import zipfile

import torch
from torch import Tensor

from mocohd_cli.plugin_api import (MocohdError, UnboundedPickleError, brief_keys, read_safetensors,
                                   safetensors_metadata, scan_torch_file, torch_load_safely, write_safetensors)
from mocohd_plugins.stylegan2.nvidia import looks_like_nvidia_pickle, read_nvidia_stylegan2

BACKBONE = "stylegan2"
FORMAT_VERSION = 1
# Keys every StyleGAN2 generator state dict has, whatever its size.
SIGNATURE_KEYS = ("input.input", "conv1.conv.weight", "conv1.conv.modulation.weight", "to_rgb1.conv.weight")
NOT_STYLEGAN2_FIX = ("pass the generator of a rosinality/stylegan2-pytorch checkpoint (torch.save dict with "
                     "'g_ema'), a .safetensors written by `mocohd convert`, or choose the right --backbone")
LOAD_OPTIONS = {"channels_last", "lr_mlp"}
# rosinality's train.py also saves its argparse.Namespace under 'args'. Namespace only holds
# attributes (no code runs when it is rebuilt), so the weights-only unpickler may accept it.
SAFE_EXTRA_GLOBALS = [argparse.Namespace]


def _strip_module_prefix(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """State dicts saved from DistributedDataParallel carry a 'module.' prefix on every key."""
    if state and all(key.startswith("module.") for key in state):
        return {key[len("module."):]: value for key, value in state.items()}
    return state


def _shape(state: dict[str, Tensor], key: str, path: Path) -> torch.Size:
    if key not in state or not isinstance(state[key], Tensor):
        raise MocohdError(f"not a StyleGAN2 generator: the state dict has no tensor {key!r}",
                          path=path, fix=NOT_STYLEGAN2_FIX)
    return state[key].shape


def infer_config(state: dict[str, Tensor], path: Path) -> dict:
    """size, style_dim, n_mlp and channels {resolution: width} from a rosinality state dict."""
    for key in SIGNATURE_KEYS:
        _shape(state, key, path)
    style_dim = _shape(state, "conv1.conv.modulation.weight", path)[1]
    n_mlp = sum(1 for key in state if re.fullmatch(r"style\.\d+\.weight", key))
    conv_ids = sorted(int(m.group(1)) for key in state if (m := re.fullmatch(r"convs\.(\d+)\.conv\.weight", key)))
    if conv_ids != list(range(len(conv_ids))) or len(conv_ids) % 2:
        raise MocohdError(f"not a StyleGAN2 generator: its convs are numbered {conv_ids[:8]}..., expected "
                          "pairs 0, 1, 2, ...", path=path, fix=NOT_STYLEGAN2_FIX)
    channels = {4: _shape(state, "input.input", path)[1]}
    for pair in range(len(conv_ids) // 2):
        channels[2 ** (pair + 3)] = _shape(state, f"convs.{2 * pair}.conv.weight", path)[1]
    return {"size": 2 ** (len(conv_ids) // 2 + 2), "style_dim": int(style_dim), "n_mlp": n_mlp,
            "channels": {res: int(width) for res, width in channels.items()}}


def _check_state(model, state: dict[str, Tensor], path: Path) -> None:
    """Same keys and shapes as the architecture, or one error listing what differs."""
    expected = {key: value.shape for key, value in model.state_dict().items()}
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    wrong = [f"{key} {list(state[key].shape)} (expected {list(shape)})"
             for key, shape in expected.items() if key in state and state[key].shape != shape]
    problems = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
        if items:
            more = f" and {len(items) - 4} more" if len(items) > 4 else ""
            problems.append(f"{label}: {', '.join(items[:4])}{more}")
    if problems:
        raise MocohdError("the tensors do not form a StyleGAN2 generator (" + "; ".join(problems) + ")",
                          path=path, fix=NOT_STYLEGAN2_FIX)


def _read_rosinality(path: Path) -> tuple[dict[str, Tensor], Tensor | None]:
    with torch.serialization.safe_globals(SAFE_EXTRA_GLOBALS):
        obj = torch_load_safely(path, "StyleGAN2 checkpoint")
    if not isinstance(obj, dict):
        raise MocohdError(f"a StyleGAN2 checkpoint must hold a dict, this one holds a {type(obj).__name__}",
                          path=path, fix=NOT_STYLEGAN2_FIX)
    if "g_ema" in obj:
        state, latent_avg = obj["g_ema"], obj.get("latent_avg")
    elif all(key in _strip_module_prefix(obj) for key in SIGNATURE_KEYS):
        state, latent_avg = obj, None  # a bare generator state dict
    else:
        keys = brief_keys(obj)
        raise MocohdError(f"no 'g_ema' generator in this checkpoint (its keys: {keys})", path=path,
                          fix=NOT_STYLEGAN2_FIX)
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise MocohdError("'g_ema' is not a state dict of tensors", path=path, fix=NOT_STYLEGAN2_FIX)
    if latent_avg is not None and not isinstance(latent_avg, Tensor):
        raise MocohdError("'latent_avg' is not a tensor", path=path, fix="remove it or save the mean w as a tensor")
    return _strip_module_prefix(dict(state)), latent_avg


def _read_safetensors(path: Path) -> tuple[dict[str, Tensor], Tensor | None, dict]:
    tensors, meta = read_safetensors(path, "StyleGAN2 checkpoint")
    backbone = meta.get("mocohd_backbone")
    if backbone != BACKBONE:
        raise MocohdError(f"this .safetensors is not a StyleGAN2 export (mocohd_backbone={backbone!r})",
                          path=path, fix="pass a file written by `mocohd convert` from a StyleGAN2 checkpoint, "
                          "or name its own backbone with --backbone")
    try:
        config = json.loads(meta["config"])
    except (KeyError, ValueError) as exc:
        raise MocohdError("the StyleGAN2 .safetensors has no readable 'config' metadata", path=path,
                          fix="re-create it with `mocohd convert`") from exc
    latent_avg = tensors.pop("latent_avg", None)
    return tensors, latent_avg, config


def _config_of_tensors(declared: dict | None, state: dict[str, Tensor], path: Path) -> dict:
    """The architecture the tensors themselves describe. A declared config (safetensors metadata,
    NVIDIA init kwargs) may add settings the shapes cannot show (lr_mlp, blur_kernel) but must
    agree on every size: a forged size must not allocate a network the file has no weights for."""
    inferred = infer_config(state, path)
    if declared is None:
        return inferred
    if not isinstance(declared, dict):
        raise MocohdError("the StyleGAN2 config metadata is not a JSON object", path=path,
                          fix="re-create the file with `mocohd convert`")
    channels = declared.get("channels")
    sizes = {"size": declared.get("size"), "style_dim": declared.get("style_dim"), "n_mlp": declared.get("n_mlp"),
             "channels": {int(k): v for k, v in channels.items() if str(k).isdigit() and len(str(k)) < 6}
             if isinstance(channels, dict) else channels}
    for key, value in sizes.items():
        if value != inferred[key]:
            raise MocohdError(f"the config says {key} = {str(value)[:80]} but the tensors in the file give "
                              f"{str(inferred[key])[:80]}", path=path, fix="the file is damaged or was edited; "
                              "re-create it with `mocohd convert`")
    extras = {key: declared[key] for key in ("lr_mlp", "blur_kernel") if key in declared}
    _check_extras(extras, path)
    return {**inferred, **extras}


def _check_extras(extras: dict, path: Path) -> None:
    lr_mlp, kernel = extras.get("lr_mlp", 0.01), extras.get("blur_kernel", [1, 3, 3, 1])
    fine = (isinstance(lr_mlp, (int, float)) and not isinstance(lr_mlp, bool) and 0 < lr_mlp < 1e3
            and isinstance(kernel, list) and 1 <= len(kernel) <= 16
            and all(isinstance(k, (int, float)) and not isinstance(k, bool) and abs(k) < 1e6 for k in kernel)
            and sum(kernel) != 0)
    if not fine:
        raise MocohdError(f"unusable StyleGAN2 config: lr_mlp {str(lr_mlp)[:40]}, blur_kernel {str(kernel)[:60]}",
                          path=path, fix="lr_mlp must be a positive number and blur_kernel a short list of "
                          "finite numbers with a non-zero sum; re-create the file with `mocohd convert`")


def load_generator(cls, path: Path, **options):
    """Build the architecture the file describes and load its weights strictly."""
    unknown = set(options) - LOAD_OPTIONS
    if unknown:
        raise MocohdError(f"unknown StyleGAN2 option(s) {sorted(unknown)}",
                          fix=f"StyleGAN2 accepts {sorted(LOAD_OPTIONS)}")
    if not path.is_file():
        raise MocohdError("StyleGAN2 checkpoint not found (or not a file)", path=path,
                          fix="pass a .pt/.pth file or a .safetensors file")
    if safetensors_metadata(path) is not None:
        state, latent_avg, config = _read_safetensors(path)
    elif path.suffix.lower() == ".pkl":  # NVIDIA StyleGAN2-ADA / StyleGAN3 pickle, read without running code
        converted = read_nvidia_stylegan2(path)
        state, latent_avg, config = converted.state_dict, converted.latent_avg, converted.config
    else:
        (state, latent_avg), config = _read_rosinality(path), None
    config = _config_of_tensors(config, state, path)
    try:
        # Built on the CPU: a meta-device build would skip the random init but pulls in sympy
        # on first use, which costs more than the init.
        model = cls(**config, **options)
    except MocohdError as exc:
        raise MocohdError(exc.message, path=path, fix=exc.fix or NOT_STYLEGAN2_FIX) from exc
    except (TypeError, ValueError) as exc:
        raise MocohdError(f"unusable StyleGAN2 config ({exc})", path=path, fix=NOT_STYLEGAN2_FIX) from exc
    _check_state(model, state, path)
    model.load_state_dict(state, strict=True)  # copies, casting half-precision checkpoints to fp32
    if latent_avg is not None:
        try:
            model.set_latent_avg(latent_avg, source="checkpoint")
        except MocohdError as exc:
            raise MocohdError(exc.message, path=path, fix=exc.fix) from exc
    return model


def save_generator(model, path: Path, **metadata) -> Path:
    if path.suffix != ".safetensors":
        raise MocohdError("the output file must end in .safetensors", path=path, fix="rename the --out file")
    tensors = dict(model.state_dict())
    if model.latent_avg is not None:
        tensors["latent_avg"] = model.latent_avg
    meta = {"mocohd_backbone": BACKBONE, "format_version": FORMAT_VERSION, "config": model.export_config(),
            "latent_avg_source": model.latent_avg_source or "none", **metadata}
    return write_safetensors(path, tensors, meta)


def _scan_passes(path: Path) -> bool:
    """The bounded pre-scan before peeking into a torch file: a malformed file is simply not
    recognised; a hostile one (over the scan's limits) is refused outright."""
    try:
        scan_torch_file(path, what="checkpoint")
    except UnboundedPickleError:
        raise
    except MocohdError:
        return False
    return True


def recognizes(path: Path) -> bool:
    """Cheap test: a mocohd StyleGAN2 .safetensors, or a torch file whose pickle names 'g_ema' or
    the generator's signature keys (read from the zip's data.pkl without loading any tensor)."""
    path = Path(path)
    if not path.is_file():
        return False
    meta = safetensors_metadata(path)
    if meta is not None:
        return meta.get("mocohd_backbone") == BACKBONE
    if path.suffix.lower() == ".pkl":
        return looks_like_nvidia_pickle(path)
    needles = [key.encode() for key in SIGNATURE_KEYS]
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            pickles = [name for name in archive.namelist() if name.endswith("data.pkl")]
            if len(pickles) != 1:
                return False
        if not _scan_passes(path):
            return False
        with zipfile.ZipFile(path) as archive:
            data = archive.read(pickles[0])
        return b"g_ema" in data or all(needle in data for needle in needles)
    if path.suffix.lower() in (".pt", ".pth", ".ckpt"):  # legacy (pre-zip) torch format: must load it
        if not _scan_passes(path):
            return False
        try:
            with torch.serialization.safe_globals(SAFE_EXTRA_GLOBALS):
                obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:
            return False
        if not isinstance(obj, dict):
            return False
        return "g_ema" in obj or all(key in _strip_module_prefix(obj) for key in SIGNATURE_KEYS)
    return False
