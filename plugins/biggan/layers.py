"""BigGAN-deep building blocks with the parameter names of pytorch-pretrained-BigGAN.

Spectral-normalised layers keep the stored `weight_orig`, `weight_u`, `weight_v` and use the
weight torch's spectral norm gives in eval mode: weight_orig / sigma with
sigma = u . (W v), no power iteration. Batch norm uses statistics recorded for `n_stats`
truncation values in [0, 1], picked (and blended) by the truncation the model was loaded with.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def spectral_normalized(weight_orig: Tensor, u: Tensor, v: Tensor) -> Tensor:
    """weight_orig / sigma, sigma = u^T W v with W the weight flattened to [out, -1]."""
    sigma = torch.dot(u, torch.mv(weight_orig.flatten(1), v))
    return weight_orig / sigma


def complete_spectral_norm(tensors: dict[str, Tensor], prefixes: list[str]) -> dict[str, Tensor]:
    """Bring older spectral-norm state dicts to (weight_orig, weight_u, weight_v).

    Before torch 1.0 the state dict held weight_orig, weight_u and the normalised `weight`, but
    no v. Then v is chosen so that u^T W v equals the sigma the stored weight was divided by
    (what torch's own upgrade hook achieves); with no stored weight, v = normalize(W^T u).
    """
    tensors = dict(tensors)
    for prefix in prefixes:
        orig, u = tensors.get(prefix + "weight_orig"), tensors.get(prefix + "weight_u")
        if orig is None or u is None:
            continue
        stored = tensors.pop(prefix + "weight", None)
        if prefix + "weight_v" in tensors:
            continue
        flat = orig.float().flatten(1)
        base = flat.t() @ u.float()  # u^T W v = base . v
        if stored is not None:
            sigma = flat.flatten() @ flat.flatten() / (flat.flatten() @ stored.float().flatten())
            tensors[prefix + "weight_v"] = base * (sigma / (base @ base))
        else:
            tensors[prefix + "weight_v"] = F.normalize(base, dim=0, eps=1e-12)
    return tensors


class _SpectralNorm(nn.Module):
    """Holds weight_orig (parameter) and the power-iteration vectors u, v (buffers)."""

    def __init__(self, weight_shape: tuple[int, ...], bias: bool):
        super().__init__()
        out_features = weight_shape[0]
        in_features = math.prod(weight_shape[1:])
        self.weight_orig = nn.Parameter(torch.empty(weight_shape))
        self.register_buffer("weight_u", torch.empty(out_features))
        self.register_buffer("weight_v", torch.empty(in_features))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        nn.init.normal_(self.weight_orig, std=0.02)
        nn.init.normal_(self.weight_u)
        nn.init.normal_(self.weight_v)

    def normalized_weight(self) -> Tensor:
        return spectral_normalized(self.weight_orig, self.weight_u, self.weight_v)


class SNLinear(_SpectralNorm):
    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__((out_features, in_features), bias)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.normalized_weight(), self.bias)


class SNConv2d(_SpectralNorm):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True):
        super().__init__((out_channels, in_channels, kernel_size, kernel_size), bias)
        self.padding = kernel_size // 2

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.normalized_weight(), self.bias, padding=self.padding)


def truncation_statistics(means: Tensor, variances: Tensor, truncation: float) -> tuple[Tensor, Tensor]:
    """The batch-norm statistics for `truncation`, chosen the way pytorch-pretrained-BigGAN does.

    Rows are stored for truncation k / (n_stats - 1). Between rows i and i+1 at fraction f
    that code weights row i by f and row i+1 by 1 - f (the reverse of a linear blend); the
    pre-trained models were published with that behaviour, so it is kept.
    """
    step = 1.0 / (means.shape[0] - 1)
    fraction, index = math.modf(truncation / step)
    index = int(index)
    if fraction == 0.0:
        return means[index], variances[index]
    mean = means[index] * fraction + means[index + 1] * (1 - fraction)
    var = variances[index] * fraction + variances[index + 1] * (1 - fraction)
    return mean, var


class TruncationBatchNorm(nn.Module):
    """Batch norm with stored statistics per truncation; class-conditional gain and bias.

    Conditional: (x - mean) / sqrt(var + eps) * (1 + scale(c)) + offset(c), scale and offset
    spectral-normalised linear maps of the condition vector c. Otherwise a plain affine.
    """

    def __init__(self, num_features: int, condition_dim: int | None, n_stats: int, eps: float):
        super().__init__()
        self.eps = eps
        self.register_buffer("running_means", torch.zeros(n_stats, num_features))
        self.register_buffer("running_vars", torch.ones(n_stats, num_features))
        self.conditional = condition_dim is not None
        if self.conditional:
            self.scale = SNLinear(condition_dim, num_features, bias=False)
            self.offset = SNLinear(condition_dim, num_features, bias=False)
        else:
            self.weight = nn.Parameter(torch.ones(num_features))
            self.bias = nn.Parameter(torch.zeros(num_features))

    def forward(self, x: Tensor, truncation: float, condition: Tensor | None = None) -> Tensor:
        mean, var = truncation_statistics(self.running_means, self.running_vars, truncation)
        if not self.conditional:
            return F.batch_norm(x, mean, var, self.weight, self.bias, training=False, eps=self.eps)
        gain = 1 + self.scale(condition)[:, :, None, None]
        bias = self.offset(condition)[:, :, None, None]
        return (x - mean[:, None, None]) * torch.rsqrt(var[:, None, None] + self.eps) * gain + bias


class SelfAttention(nn.Module):
    """Non-local block (SAGAN): keys and values are 2x2 max-pooled; out = x + gamma * o(attn)."""

    def __init__(self, channels: int):
        super().__init__()
        self.snconv1x1_theta = SNConv2d(channels, channels // 8, 1, bias=False)
        self.snconv1x1_phi = SNConv2d(channels, channels // 8, 1, bias=False)
        self.snconv1x1_g = SNConv2d(channels, channels // 2, 1, bias=False)
        self.snconv1x1_o_conv = SNConv2d(channels // 2, channels, 1, bias=False)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor) -> Tensor:
        batch, _, height, width = x.shape
        query = self.snconv1x1_theta(x).flatten(2)  # [N, C/8, HW]
        key = F.max_pool2d(self.snconv1x1_phi(x), 2).flatten(2)  # [N, C/8, HW/4]
        value = F.max_pool2d(self.snconv1x1_g(x), 2).flatten(2)  # [N, C/2, HW/4]
        attention = torch.softmax(query.transpose(1, 2) @ key, dim=-1)  # [N, HW, HW/4]
        attended = (value @ attention.transpose(1, 2)).view(batch, -1, height, width)
        return x + self.gamma * self.snconv1x1_o_conv(attended)


class GenBlock(nn.Module):
    """BigGAN-deep residual block: four BN-ReLU-conv stages (1x1, 3x3, 3x3, 1x1) with a
    4x channel bottleneck; the shortcut drops channels and upsamples (nearest) to match."""

    def __init__(self, in_channels: int, out_channels: int, condition_dim: int, *, upsample: bool,
                 n_stats: int, eps: float):
        super().__init__()
        self.upsample = upsample
        self.drop_channels = in_channels != out_channels
        middle = in_channels // 4
        widths = [(in_channels, middle, 1), (middle, middle, 3), (middle, middle, 3), (middle, out_channels, 1)]
        for index, (cin, cout, kernel) in enumerate(widths):
            self.add_module(f"bn_{index}", TruncationBatchNorm(cin, condition_dim, n_stats, eps))
            self.add_module(f"conv_{index}", SNConv2d(cin, cout, kernel))

    def forward(self, x: Tensor, condition: Tensor, truncation: float) -> Tensor:
        shortcut = x
        for index in range(4):
            x = F.relu(getattr(self, f"bn_{index}")(x, truncation, condition))
            if index == 1 and self.upsample:
                x = F.interpolate(x, scale_factor=2, mode="nearest")
            x = getattr(self, f"conv_{index}")(x)
        if self.drop_channels:
            shortcut = shortcut[:, : shortcut.shape[1] // 2]
        if self.upsample:
            shortcut = F.interpolate(shortcut, scale_factor=2, mode="nearest")
        return x + shortcut
