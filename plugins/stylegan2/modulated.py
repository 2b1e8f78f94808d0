"""The StyleGAN2 synthesis layers: modulated convolutions, noise injection, toRGB.

Speed note. The published formulation builds one weight tensor per sample (weight * style,
demodulated) and runs a grouped convolution with groups = batch; on CPUs that is several times
slower than one ordinary convolution. Modulation and demodulation are per-sample scalings of the
input channels and of the output channels, so the same result comes from

    out = conv(x * style, weight) * demod,   demod[n, o] = rsqrt(sum_i style[n, i]^2 * |weight[o, i]|^2 + 1e-8)

with ONE shared weight over the whole batch (the demodulation sum factorises over the taps). The
up-sampling layer is the same trick with a stride-2 transposed convolution followed by the FIR blur.

Activations passed between layers are leaky_relu outputs WITHOUT the sqrt(2) gain: every consumer
folds that gain into its input modulation (`input_gain`), which saves one pass over each feature map.

Precision (docs/precision.md). Under autocast (bf16, or fp16 on CUDA) only the convolutions of the
layers marked `low_precision` run in the autocast dtype: their input is rounded once after the
modulation, their output is brought back to fp32 before demodulation. Everything else stays fp32:
styles, demodulation, bias, noise, the activations between layers, toRGB and the RGB skip, and
every convolution of the other (low-resolution) layers. Rounding those cost as much accuracy as the
large convolutions did, for a small share of the time. Without autocast nothing changes.
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layers import LRELU_SLOPE, Blur, EqualLinear, Upsample


class ModulatedConv2d(nn.Module):
    """Style-modulated (and optionally demodulated) k x k convolution, optionally up-sampling 2x."""

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, style_dim: int, *,
                 demodulate: bool = True, upsample: bool = False, blur_kernel: Sequence[float] = (1, 3, 3, 1)):
        super().__init__()
        self.in_channel, self.out_channel, self.kernel_size = in_channel, out_channel, kernel_size
        self.upsample, self.demodulate = upsample, demodulate
        self.scale = 1.0 / math.sqrt(in_channel * kernel_size ** 2)
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.randn(1, out_channel, in_channel, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_channel, bias_init=1.0)
        if upsample:
            # The stride-2 transposed conv gives 2H + k - 2 rows; the blur brings them back to 2H.
            p = len(blur_kernel) - 2 - (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2 + 1, p // 2 + 1), gain=4.0)

    low_precision = True  # may the convolution run in the autocast dtype (set per layer by the generator)

    def forward(self, x: Tensor, w: Tensor, *, input_gain: float = 1.0,
                inplace: bool = False) -> tuple[Tensor, Tensor | None]:
        """x [N, in, H, W], w [N, style_dim] -> (conv output [N, out, H', W'] before demodulation,
        demodulation coefficients [N, out] or None). `inplace` rescales x in place (inference).

        The output is in the autocast dtype when this layer runs its convolution in it
        (`compute_dtype`), else in x's dtype; the coefficients are always fp32."""
        dtype = self.compute_dtype(x)
        with autocast_off(x):  # the casts below are explicit
            # the small per-sample math stays fp32
            style = self.modulation(w.float())
            demod = torch.rsqrt(style.square() @ self.tap_energy().t() + 1e-8) if self.demodulate else None
            # The equalised-lr scale and the producer's activation gain ride on the per-sample style,
            # so the shared weight is used as stored (no per-call copy of it).
            x_scale = (style * (input_gain * self.scale))[:, :, None, None].to(x.dtype)
            x = x.mul_(x_scale) if inplace else x * x_scale
            x = x.to(dtype)  # the one rounding of the input (none in fp32)
            if dtype == self.weight.dtype:
                weight = self.weight[0].transpose(0, 1) if self.upsample else self.weight[0]
            else:  # cast once, in the layout the convolution wants (it would reorder it on every call)
                weight = self._derived("cast", dtype, layout_of(x))
            if self.upsample:
                out = self.blur(F.conv_transpose2d(x, weight, stride=2))
            else:
                out = F.conv2d(x, weight, padding=self.padding)
        return out, demod

    def compute_dtype(self, x: Tensor) -> torch.dtype:
        """The convolution's dtype for input x: autocast's when it is on for x's device and this
        layer is `low_precision`, else x's own."""
        dtype = autocast_dtype(x)
        return dtype if dtype is not None and self.low_precision else x.dtype

    def tap_energy(self) -> Tensor:
        """[out, in] sums over the taps of (scale * weight)^2, so that the demodulation sum over
        in-channels and taps of (scale * weight * style)^2 is style^2 @ energy^T."""
        return self._derived("energy", self.weight.dtype)

    def _derived(self, what: str, dtype: torch.dtype, layout: torch.memory_format = torch.contiguous_format) -> Tensor:
        """A tensor computed from the weight alone: "energy", or "cast", the convolution's weight
        in `dtype` and `layout` ([in, out, k, k] for the transposed convolution).

        Cached while the weight is unchanged (same storage and version) and no gradient for it is
        wanted: a frozen backbone pays for it once, a generator in training on every call.
        """
        weight = self.weight

        def compute() -> Tensor:
            if what == "energy":
                return weight[0].square().sum(dim=(2, 3)) * self.scale ** 2
            return (weight[0].transpose(0, 1) if self.upsample else weight[0]).to(dtype, memory_format=layout)

        if weight.requires_grad and torch.is_grad_enabled():
            return compute()
        # Tensors made under inference_mode may not enter autograd later: they are cached apart.
        key = (weight.data_ptr(), weight._version, weight.device, dtype, layout, torch.is_inference_mode_enabled())
        cache = self.__dict__.setdefault("_derived_cache", {})
        if what not in cache or cache[what][0] != key:
            with torch.no_grad():
                cache[what] = (key, compute())
        return cache[what][1]

    def extra_repr(self) -> str:
        return (f"{self.in_channel}, {self.out_channel}, {self.kernel_size}, upsample={self.upsample}, "
                f"demodulate={self.demodulate}")


class NoiseInjection(nn.Module):
    """Adds a learned multiple of a single-channel noise map (broadcast over channels)."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))


class FusedBias(nn.Module):
    """Holds the per-channel bias applied before the leaky relu (rosinality's FusedLeakyReLU)."""

    def __init__(self, channel: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channel))


class StyledConv(nn.Module):
    """Modulated conv -> + noise -> + bias -> leaky relu (the sqrt(2) gain left to the consumer)."""

    def __init__(self, in_channel: int, out_channel: int, style_dim: int, *, upsample: bool = False,
                 blur_kernel: Sequence[float] = (1, 3, 3, 1)):
        super().__init__()
        self.conv = ModulatedConv2d(in_channel, out_channel, 3, style_dim, upsample=upsample,
                                    blur_kernel=blur_kernel)
        self.noise = NoiseInjection()
        self.activate = FusedBias(out_channel)

    def forward(self, x: Tensor, w: Tensor, noise: Tensor | None, *, input_gain: float = 1.0,
                inplace: bool = False) -> Tensor:
        """`inplace` (inference only) overwrites x and reuses the conv output: no large allocations
        beyond the convolution's own, which matters on CPUs where fresh buffers page-fault."""
        dtype = x.dtype  # the activations' dtype (fp32), kept whatever the convolution ran in
        out, demod = self.conv(x, w, input_gain=input_gain, inplace=inplace)
        if out.dtype != dtype:
            # Back to the activations' dtype before demodulation; in place, into x's buffer when
            # the shapes allow (x is spent: its scaled copy was the convolution's input).
            reuse = inplace and x.shape == out.shape and x.stride() == out.stride()
            out = x.copy_(out) if reuse else out.to(dtype)
        with autocast_off(out):
            # demodulate and add the bias in one pass
            out = torch.addcmul(self.activate.bias.view(1, -1, 1, 1), out, demod[:, :, None, None],
                                out=out if inplace else None)
            if noise is not None:
                out.add_(self.noise.weight * noise.to(dtype))
            return F.leaky_relu_(out, LRELU_SLOPE)


class ToRGB(nn.Module):
    """1x1 modulated conv to RGB (no demodulation) + bias, plus the 2x up-sampled previous skip."""

    def __init__(self, in_channel: int, style_dim: int, *, upsample: bool = True,
                 blur_kernel: Sequence[float] = (1, 3, 3, 1)):
        super().__init__()
        self.conv = ModulatedConv2d(in_channel, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))
        if upsample:
            self.upsample = Upsample(blur_kernel)

    def forward(self, x: Tensor, w: Tensor, skip: Tensor | None = None, *, input_gain: float = 1.0) -> Tensor:
        conv = self.conv
        # All fp32, even under autocast: 3 output channels cost little, and the RGB skip sums every
        # resolution's contribution (its rounding reached the frames directly).
        with autocast_off(x):
            # A 1x1 conv with per-sample weights is a batched matmul: fold the style into the
            # (tiny) [N, 3, C] weight instead of rescaling the (large) feature map.
            style = conv.modulation(w.float()) * (input_gain * conv.scale)
            weight = conv.weight[0, :, :, 0, 0][None] * style[:, None, :]
            out = per_sample_1x1(x.float(), weight) + self.bias
            if skip is not None:
                out = out + self.upsample(skip.float())
        return out


def autocast_dtype(x: Tensor) -> torch.dtype | None:
    """The dtype autocast is on with for x's device, or None (also where autocast does not exist,
    as on the meta device)."""
    kind = x.device.type
    try:
        return torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else None
    except RuntimeError:
        return None


def autocast_off(x: Tensor):
    """A context with autocast off for x's device (nothing to do where it is off already)."""
    return torch.autocast(x.device.type, enabled=False) if autocast_dtype(x) is not None else contextlib.nullcontext()


def layout_of(x: Tensor) -> torch.memory_format:
    """channels_last for a channels-last feature map (not one that is both, as 1x1 maps are)."""
    channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    return torch.channels_last if channels_last else torch.contiguous_format


def per_sample_1x1(x: Tensor, weight: Tensor) -> Tensor:
    """x [N, C, H, W], weight [N, O, C] -> [N, O, H, W]: one batched matmul over x's memory as it
    lies (channels-last: [N, HW, C] @ [N, C, O]), so x is never copied into another layout."""
    n, c, h, w = x.shape
    if layout_of(x) == torch.channels_last:
        out = torch.bmm(x.permute(0, 2, 3, 1).reshape(n, h * w, c), weight.transpose(1, 2))
        return out.view(n, h, w, -1).permute(0, 3, 1, 2)
    return torch.bmm(weight, x.reshape(n, c, h * w)).view(n, -1, h, w)


class ConstantInput(nn.Module):
    """The learned 4x4 starting feature map."""

    def __init__(self, channel: int, size: int = 4):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channel, size, size))
