"""Device and precision choices. Nothing assumes CUDA."""
from __future__ import annotations

import contextlib

import torch

from .errors import MocohdError

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
# What --device accepts on the command line (resolve_device also takes cuda:N from a program)
DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str = "auto") -> torch.device:
    """auto, cpu, cuda or cuda:N. Other torch devices (meta holds no data, mps and xpu are
    untested here) are refused rather than failing deep inside a model."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as exc:
        raise MocohdError(f"unknown device {name[:40]!r}", fix="use auto, cpu or cuda[:N]") from exc
    if device.type not in ("cpu", "cuda"):
        raise MocohdError(f"device {name!r} is not supported", fix="use auto, cpu or cuda[:N]")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise MocohdError("--device cuda was asked for but no CUDA device is available",
                              fix="use --device cpu or --device auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise MocohdError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)",
                              fix=f"use cuda:0 ... cuda:{torch.cuda.device_count() - 1}")
    return device


def autocast(device: torch.device, precision: str = "fp32"):
    """Autocast context for the precision; fp32 is a no-op.

    Pairs that would not run as asked are refused rather than silently run otherwise: fp16 on the
    CPU, bf16 on a GPU without bf16 support (before Ampere). What runs in reduced precision inside
    the backbones is their own choice (docs/precision.md); losses and the gradient penalty stay fp32.
    """
    if precision not in PRECISIONS:
        raise MocohdError(f"unknown precision {precision!r}", fix="use fp32, bf16 or fp16")
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext()
    if device.type == "cpu" and dtype is torch.float16:
        raise MocohdError("fp16 autocast is not supported on the CPU", fix="use --precision bf16 or fp32")
    if device.type == "cuda" and dtype is torch.bfloat16 and not torch.cuda.is_bf16_supported(including_emulation=False):
        raise MocohdError(f"this GPU ({torch.cuda.get_device_name(device)}) has no bf16 support",
                          fix="use --precision fp16 (with its gradient scaler) or fp32")
    return torch.autocast(device_type=device.type, dtype=dtype)
