"""StyleGAN2's residual discriminator in the rosinality/stylegan2-pytorch layout.

Parameter and buffer names match rosinality's `Discriminator`, so a checkpoint's 'd' state dict
loads strictly (`Discriminator.from_state_dict`). Used for GAN pre-training of the generator.
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from mocohd_cli.plugin_api import MocohdError

from .generator import BLUR_KERNEL, default_channels
from .layers import Blur, EqualConv2d, EqualLinear, FusedLeakyReLU


class ConvLayer(nn.Sequential):
    """[blur ->] equalised conv (stride 2 when down-sampling) [-> bias + leaky relu]."""

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, *, downsample: bool = False,
                 blur_kernel: Sequence[float] = BLUR_KERNEL, bias: bool = True, activate: bool = True):
        layers: list[nn.Module] = []
        if downsample:
            # Blur so that the stride-2 conv sees a band-limited signal and lands on H / 2.
            p = len(blur_kernel) - 2 + kernel_size - 1
            layers.append(Blur(blur_kernel, pad=((p + 1) // 2, p // 2)))
            stride, padding = 2, 0
        else:
            stride, padding = 1, kernel_size // 2
        layers.append(EqualConv2d(in_channel, out_channel, kernel_size, stride=stride, padding=padding,
                                  bias=bias and not activate))
        if activate:
            layers.append(FusedLeakyReLU(out_channel, bias=bias))
        super().__init__(*layers)


class ResBlock(nn.Module):
    """Two 3x3 convs (the second down-sampling) plus a 1x1 down-sampling skip, summed / sqrt(2)."""

    def __init__(self, in_channel: int, out_channel: int, blur_kernel: Sequence[float] = BLUR_KERNEL):
        super().__init__()
        self.conv1 = ConvLayer(in_channel, in_channel, 3, blur_kernel=blur_kernel)
        self.conv2 = ConvLayer(in_channel, out_channel, 3, downsample=True, blur_kernel=blur_kernel)
        self.skip = ConvLayer(in_channel, out_channel, 1, downsample=True, blur_kernel=blur_kernel,
                              activate=False, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) * (1 / math.sqrt(2))


def minibatch_stddev(x: Tensor, group_size: int = 4) -> Tensor:
    """Append one channel: the feature standard deviation across a group of samples.

    Sample i is grouped with the samples i + k * (N / G) (rosinality's grouping). G is
    min(N, group_size), lowered to a divisor of N when N is not a multiple of it.
    """
    n, c, h, w = x.shape
    group = min(n, group_size)
    while n % group:
        group -= 1
    std = torch.sqrt(x.view(group, n // group, c, h, w).var(dim=0, unbiased=False) + 1e-8)
    std = std.mean(dim=(1, 2, 3)).view(1, n // group, 1, 1, 1).expand(group, -1, 1, h, w)
    return torch.cat([x, std.reshape(n, 1, h, w)], dim=1)


class Discriminator(nn.Module):
    """Residual StyleGAN2 discriminator: [N, 3, size, size] images -> [N, 1] realness scores."""

    def __init__(self, size: int, channel_multiplier: int = 2, channels: Mapping[int | str, int] | None = None, *,
                 blur_kernel: Sequence[float] = BLUR_KERNEL, stddev_group: int = 4):
        super().__init__()
        if size < 4 or size & (size - 1):
            raise MocohdError(f"the StyleGAN2 discriminator needs a power-of-two size >= 4, got {size}")
        widths = default_channels(size, channel_multiplier)
        widths.update({int(res): int(width) for res, width in (channels or {}).items()})
        self.size = size
        self.channels = {res: widths[res] for res in sorted(widths) if res <= size}
        self.stddev_group = stddev_group
        convs: list[nn.Module] = [ConvLayer(3, self.channels[size], 1)]
        in_channel = self.channels[size]
        for log_res in range(int(math.log2(size)), 2, -1):
            out_channel = self.channels[2 ** (log_res - 1)]
            convs.append(ResBlock(in_channel, out_channel, blur_kernel))
            in_channel = out_channel
        self.convs = nn.Sequential(*convs)
        c4 = self.channels[4]
        self.final_conv = ConvLayer(in_channel + 1, c4, 3)
        self.final_linear = nn.Sequential(EqualLinear(c4 * 4 * 4, c4, activation=True), EqualLinear(c4, 1))

    def forward(self, images: Tensor) -> Tensor:
        out = self.final_conv(minibatch_stddev(self.convs(images), self.stddev_group))
        return self.final_linear(out.flatten(1))

    def export_config(self) -> dict:
        return {"size": self.size, "channels": {str(res): width for res, width in self.channels.items()}}

    @classmethod
    def infer_config(cls, state: Mapping[str, Tensor]) -> dict:
        """size and channel widths from a rosinality discriminator state dict."""
        try:
            blocks = sorted(int(m.group(1)) for key in state
                            if (m := re.fullmatch(r"convs\.(\d+)\.conv2\.1\.weight", key)))
            size = 2 ** (len(blocks) + 2)
            channels = {size: state["convs.0.0.weight"].shape[0], 4: state["final_conv.0.weight"].shape[0]}
            for i in blocks:
                channels[size >> i] = state[f"convs.{i}.conv2.1.weight"].shape[0]
        except KeyError as exc:
            raise MocohdError(f"not a StyleGAN2 discriminator state dict (no {exc.args[0]!r})",
                              fix="pass the 'd' entry of a rosinality/stylegan2-pytorch checkpoint") from exc
        return {"size": size, "channels": channels}

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Tensor]) -> "Discriminator":
        model = cls(**cls.infer_config(state))
        model.load_state_dict(state, strict=True)
        return model
