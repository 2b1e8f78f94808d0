"""Equalised-learning-rate building blocks shared by the StyleGAN2 generator and discriminator.

Module and parameter names follow rosinality/stylegan2-pytorch so that its state dicts load
strictly; the arithmetic is written for speed on batched inputs (see modulated.py).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)  # keeps the activations' second moment through leaky relu


def fir_kernel(taps: Sequence[float], gain: float = 1.0) -> Tensor:
    """Separable 2-D FIR kernel from 1-D taps, normalised to sum to `gain`."""
    k = torch.tensor(list(taps), dtype=torch.float32)
    k = torch.outer(k, k) if k.ndim == 1 else k
    return k * (gain / k.sum())


def fused_leaky_relu(x: Tensor, bias: Tensor | None = None, gain: float = LRELU_GAIN) -> Tensor:
    """leaky_relu(x + bias, 0.2) * gain, with a per-channel bias (channel axis 1)."""
    if bias is not None:
        x = x + bias.view(1, -1, *([1] * (x.ndim - 2)))
    out = F.leaky_relu(x, LRELU_SLOPE)
    return out * gain if gain != 1.0 else out


def _depthwise(kernel: Tensor, channels: int, like: Tensor) -> Tensor:
    return kernel.to(dtype=like.dtype).expand(channels, 1, *kernel.shape).contiguous()


def blur(x: Tensor, kernel: Tensor, pad: tuple[int, int]) -> Tensor:
    """FIR-filter every channel with `kernel` after padding (pad0 before, pad1 after) both axes.

    True convolution (kernel flipped), as upfirdn2d with up = down = 1.
    """
    pad0, pad1 = pad
    weight = _depthwise(kernel.flip(0, 1), x.shape[1], x)
    if pad0 == pad1:
        return F.conv2d(x, weight, padding=pad0, groups=x.shape[1])
    return F.conv2d(F.pad(x, (pad0, pad1, pad0, pad1)), weight, groups=x.shape[1])


def upsample_2x(x: Tensor, kernel: Tensor) -> Tensor:
    """Zero-insertion 2x up-sampling followed by the FIR `kernel` (already scaled by 4).

    Same result as upfirdn2d(x, kernel, up=2, pad=(p0, p1)) with the standard pads, computed as a
    stride-2 depthwise transposed convolution (no zero-filled intermediate).
    """
    k = kernel.shape[0]
    pad0 = (k - 2 + 1) // 2 + 1  # upfirdn2d's leading pad for factor 2
    return F.conv_transpose2d(x, _depthwise(kernel, x.shape[1], x), stride=2,
                              padding=k - 1 - pad0, groups=x.shape[1])


class PixelNorm(nn.Module):
    """Normalise each latent vector to unit root-mean-square."""

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.rsqrt(x.square().mean(dim=1, keepdim=True) + 1e-8)


class EqualLinear(nn.Module):
    """Linear layer with equalised learning rate: weight ~ N(0, 1/lr_mul^2), scaled at run time.

    activation=True applies the fused leaky relu (bias added before it).
    """

    def __init__(self, in_dim: int, out_dim: int, *, bias: bool = True, bias_init: float = 0.0,
                 lr_mul: float = 1.0, activation: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim).div_(lr_mul))
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init))) if bias else None
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul
        self.activation = activation

    def forward(self, x: Tensor) -> Tensor:
        # Scaling the (small) input rather than the weight: no copy of the weight per call.
        bias = self.bias * self.lr_mul if self.bias is not None else None
        if self.activation:
            return fused_leaky_relu(F.linear(x * self.scale, self.weight), bias)
        return F.linear(x * self.scale, self.weight, bias)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[1]}, {self.weight.shape[0]}, lr_mul={self.lr_mul}, act={self.activation}"


class EqualConv2d(nn.Module):
    """Conv2d with equalised learning rate (weight scaled by 1/sqrt(fan_in) at run time)."""

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, *, stride: int = 1,
                 padding: int = 0, bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channel, in_channel, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channel)) if bias else None
        self.scale = 1.0 / math.sqrt(in_channel * kernel_size ** 2)
        self.stride = stride
        self.padding = padding

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, stride=self.stride, padding=self.padding)

    def extra_repr(self) -> str:
        o, i, k, _ = self.weight.shape
        return f"{i}, {o}, {k}, stride={self.stride}, padding={self.padding}"


class FusedLeakyReLU(nn.Module):
    """Per-channel bias + leaky relu(0.2) * sqrt(2); `bias` is the only parameter."""

    def __init__(self, channel: int, bias: bool = True):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channel)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        return fused_leaky_relu(x, self.bias)


class Blur(nn.Module):
    """FIR low-pass with fixed padding; the kernel is a (persistent) buffer as in rosinality."""

    def __init__(self, taps: Sequence[float], pad: tuple[int, int], gain: float = 1.0):
        super().__init__()
        self.register_buffer("kernel", fir_kernel(taps, gain))
        self.pad = pad

    def forward(self, x: Tensor) -> Tensor:
        return blur(x, self.kernel, self.pad)


class Upsample(nn.Module):
    """2x zero-insertion up-sampling + FIR (kernel buffer scaled by 4 to keep the mean level)."""

    def __init__(self, taps: Sequence[float]):
        super().__init__()
        if len(taps) % 2:
            raise ValueError("the up-sampling FIR needs an even number of taps")
        self.register_buffer("kernel", fir_kernel(taps, gain=4.0))

    def forward(self, x: Tensor) -> Tensor:
        return upsample_2x(x, self.kernel)
