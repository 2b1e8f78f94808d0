"""Multi-scale PatchGAN discriminators, in 3-D for videos and in 2-D for image pairs (docs/method.md, "In-domain training").

Per scale: 4-wide convs (padding 2) with strides 2, 2, 2, 1 and ndf, 2 ndf, 4 ndf, 8 ndf
channels (64 .. 512 by default), LeakyReLU 0.2, instance norm (no affine, running stats
kept) after all but the first, then a conv to one channel. Each scale returns every layer's
output; scales see the input average-pooled once more each.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

_CONV = {2: nn.Conv2d, 3: nn.Conv3d}
_NORM = {2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}
_POOL = {2: nn.AvgPool2d, 3: nn.AvgPool3d}


def init_weights(module: nn.Module) -> None:
    """Convolution weights ~ N(0, 0.02), as in the release."""
    if isinstance(module, (nn.Conv2d, nn.Conv3d)):
        nn.init.normal_(module.weight, 0.0, 0.02)


class PatchDiscriminator(nn.Module):
    """One scale: a stack of blocks; forward returns every block's output (the losses use the last)."""

    def __init__(self, dims: int, in_channels: int, ndf: int = 64, n_layers: int = 3, max_channels: int = 512):
        super().__init__()
        conv, norm = _CONV[dims], _NORM[dims]
        blocks = [nn.Sequential(conv(in_channels, ndf, 4, stride=2, padding=2), nn.LeakyReLU(0.2, True))]
        channels = ndf
        for index in range(1, n_layers + 1):
            previous, channels = channels, min(channels * 2, max_channels)
            stride = 2 if index < n_layers else 1
            blocks.append(nn.Sequential(conv(previous, channels, 4, stride=stride, padding=2),
                                        norm(channels, affine=False, track_running_stats=True),
                                        nn.LeakyReLU(0.2, True)))
        blocks.append(nn.Sequential(conv(channels, 1, 4, stride=1, padding=2)))
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: Tensor) -> list[Tensor]:
        outputs = []
        for block in self.blocks:
            x = block(x)
            outputs.append(x)
        return outputs


class MultiScaleDiscriminator(nn.Module):
    """`num_scales` PatchGANs; scale k sees the input average-pooled k times.

    Input [B, C, H, W] (dims=2) or [B, C, T, H, W] (dims=3); output: one list of layer
    outputs per scale. In 3-D the pooling keeps time for clips of <= 16 frames and halves
    it for longer ones.
    """

    def __init__(self, dims: int, in_channels: int, *, num_scales: int = 2, ndf: int = 64, n_layers: int = 3,
                 n_frames: int = 16):
        super().__init__()
        if dims not in _CONV:
            raise ValueError(f"dims must be 2 or 3, got {dims}")
        self.dims = dims
        self.scales = nn.ModuleList(PatchDiscriminator(dims, in_channels, ndf, n_layers) for _ in range(num_scales))
        stride = (1, 2, 2) if dims == 3 and n_frames <= 16 else 2
        self.downsample = _POOL[dims](3, stride=stride, padding=1, count_include_pad=False)
        self.apply(init_weights)

    def forward(self, x: Tensor) -> list[list[Tensor]]:
        if self.dims == 3 and x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            # On the CPU, bf16 3-D convolutions gave non-finite weight gradients for some inputs
            # (bf16 training diverged at its second iteration; docs/precision.md): fp32 there.
            with torch.autocast("cpu", enabled=False):
                return self._forward(x.float())
        return self._forward(x)

    def _forward(self, x: Tensor) -> list[list[Tensor]]:
        results = []
        for index, scale in enumerate(self.scales):
            if index:
                x = self.downsample(x)
            results.append(scale(x))
        return results


def video_discriminator(in_channels: int, n_frames: int, *, num_scales: int = 2, ndf: int = 64,
                        n_layers: int = 3) -> MultiScaleDiscriminator:
    """3-D PatchGAN on clips [B, C, T, H, W] (in-domain: C = 6, frame t next to frame 0, T-1 frames)."""
    return MultiScaleDiscriminator(3, in_channels, num_scales=num_scales, ndf=ndf, n_layers=n_layers,
                                   n_frames=n_frames)


def image_discriminator(in_channels: int = 6, *, num_scales: int = 2, ndf: int = 64,
                        n_layers: int = 3) -> MultiScaleDiscriminator:
    """2-D PatchGAN on image pairs [B, C, H, W] (in-domain: frame 0 and frame t, C = 6)."""
    return MultiScaleDiscriminator(2, in_channels, num_scales=num_scales, ndf=ndf, n_layers=n_layers)
