"""Device and precision choices. Nothing assumes CUDA."""
from __future__ import annotations

import contextlib

import torch

from .errors import MocohdError

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise MocohdError("--device cuda was asked for but no CUDA device is available",
                          fix="use --device cpu or --device auto")
    try:
        return torch.device(name)
    except RuntimeError as exc:
        raise MocohdError(f"unknown device {name!r}", fix="use auto, cpu or cuda[:N]") from exc


def autocast(device: torch.device, precision: str = "fp32"):
    """Autocast context for the precision; fp32 (or an unsupported pair) is a no-op.

    fp16 on the CPU is refused rather than silently run in fp32.
    """
    if precision not in PRECISIONS:
        raise MocohdError(f"unknown precision {precision!r}", fix="use fp32, bf16 or fp16")
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext()
    if device.type == "cpu" and dtype is torch.float16:
        raise MocohdError("fp16 autocast is not supported on the CPU", fix="use --precision bf16 or fp32")
    return torch.autocast(device_type=device.type, dtype=dtype)
