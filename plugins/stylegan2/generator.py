"""The StyleGAN2 generator as a mocohd backbone (rosinality/stylegan2-pytorch layout).

Parameter and buffer names equal those of rosinality's `Generator`, so its `g_ema` state dicts
load with `load_state_dict(strict=True)`; every width is inferred from the tensors (checkpoint.py).
The motion space is W: `mapping` turns z into w, `synthesize` renders one w per frame (the same w
for every layer: no style mixing).
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils import checkpoint as activation_checkpoint

from mocohd_cli.plugin_api import ImageGenerator, MocohdError

from . import checkpoint
from .layers import LRELU_GAIN, EqualLinear, PixelNorm
from .modulated import ConstantInput, StyledConv, ToRGB

BLUR_KERNEL = (1, 3, 3, 1)
MEAN_LATENT_SAMPLES = 4096
MEAN_LATENT_SEED = 0
# Under autocast, the convolutions from this output resolution up run in bf16/fp16; the rest stays
# fp32. A rounding in a low-resolution layer is up-sampled into a smooth error and carried through
# every later layer, so those layers (10% of the arithmetic at 256 px) cost as much accuracy as
# all the larger ones together; measured in docs/precision.md.
LOW_PRECISION_MIN_RESOLUTION = 64
# ... and only where both sides have this many channels: narrower convolutions gain little or
# nothing in bf16 on a CPU (16 channels: slower) and their rounding shows more in the frames.
LOW_PRECISION_MIN_CHANNELS = 128
# The one table of which convolutions leave fp32 under autocast, per use (set_low_precision's
# arguments; docs/precision.md). Sampling keeps frames within 1e-2 of fp32. Training needs no
# per-pixel accuracy (the discriminators see pooled frames; what is learnt is the motion model's
# gradient), so every convolution that runs faster in bf16 does: from 8 px (a 4 px one is slower)
# and 32 channels (16: slower).
PRECISION_POLICIES = {
    "sampling": {"min_resolution": LOW_PRECISION_MIN_RESOLUTION, "min_channels": LOW_PRECISION_MIN_CHANNELS},
    "training": {"min_resolution": 8, "min_channels": 32},
}


def default_channels(size: int, channel_multiplier: int = 2) -> dict[int, int]:
    """rosinality's width table: 512 up to 32 px, then 16384 / res * channel_multiplier (64-1024 px)."""
    table = {4: 512, 8: 512, 16: 512, 32: 512}
    for res in (64, 128, 256, 512, 1024):
        table[res] = (16384 // res) * channel_multiplier
    return {res: width for res, width in table.items() if res <= size}


def noise_resolutions(size: int) -> list[int]:
    """Side of each noise map: 4 for the first conv, then two layers per resolution up to `size`."""
    log_size = int(math.log2(size))
    return [2 ** ((layer + 5) // 2) for layer in range(2 * (log_size - 2) + 1)]


class StyleGAN2Generator(ImageGenerator):
    """StyleGAN2 (config-F architecture, skip generator) driven through its W space."""
    name = "stylegan2"
    description = "StyleGAN2 generator, rosinality/stylegan2-pytorch checkpoints (.pt) or mocohd .safetensors; motion in W"
    condition_dim = 0

    def __init__(self, size: int, style_dim: int = 512, n_mlp: int = 8, channel_multiplier: int = 2,
                 channels: Mapping[int | str, int] | None = None, *, lr_mlp: float = 0.01,
                 blur_kernel: Sequence[float] = BLUR_KERNEL, channels_last: bool = True,
                 low_precision_from: int = LOW_PRECISION_MIN_RESOLUTION):
        super().__init__()
        if size < 4 or size & (size - 1):
            raise MocohdError(f"StyleGAN2 size must be a power of two >= 4, got {size}")
        widths = default_channels(size, channel_multiplier)
        widths.update({int(res): int(width) for res, width in (channels or {}).items()})
        missing = [2 ** i for i in range(2, int(math.log2(size)) + 1) if 2 ** i not in widths]
        if missing:
            raise MocohdError(f"no channel width given for resolution(s) {missing}",
                              fix="pass channels={resolution: width, ...} for every resolution")
        self.size = self.resolution = size
        self.style_dim = self.latent_dim = self.z_dim = style_dim
        self.n_mlp = n_mlp
        self.lr_mlp = lr_mlp
        self.blur_kernel = tuple(float(t) for t in blur_kernel)
        self.channels = {res: widths[res] for res in sorted(widths) if res <= size}
        self.channels_last = channels_last
        self.log_size = int(math.log2(size))
        self.num_layers = 2 * (self.log_size - 2) + 1
        self.n_latent = 2 * self.log_size - 2

        self.style = nn.Sequential(PixelNorm(), *[
            EqualLinear(style_dim, style_dim, lr_mul=lr_mlp, activation=True) for _ in range(n_mlp)])
        c4 = self.channels[4]
        self.input = ConstantInput(c4)
        self.conv1 = StyledConv(c4, c4, style_dim, blur_kernel=blur_kernel)
        self.to_rgb1 = ToRGB(c4, style_dim, upsample=False, blur_kernel=blur_kernel)
        self.convs = nn.ModuleList()
        self.upsamples = nn.ModuleList()  # empty; kept so the module tree mirrors rosinality's
        self.to_rgbs = nn.ModuleList()
        self.noises = nn.Module()
        for layer, res in enumerate(noise_resolutions(size)):
            self.noises.register_buffer(f"noise_{layer}", torch.randn(1, 1, res, res))
        in_channel = c4
        for i in range(3, self.log_size + 1):
            out_channel = self.channels[2 ** i]
            self.convs.append(StyledConv(in_channel, out_channel, style_dim, upsample=True, blur_kernel=blur_kernel))
            self.convs.append(StyledConv(out_channel, out_channel, style_dim, blur_kernel=blur_kernel))
            self.to_rgbs.append(ToRGB(out_channel, style_dim, blur_kernel=blur_kernel))
            in_channel = out_channel
        # The mean of W for truncation: from the checkpoint when it has one, else estimated lazily.
        # Not part of the state dict, so rosinality's g_ema loads strictly.
        self.register_buffer("latent_avg", None, persistent=False)
        self.latent_avg_source: str | None = None
        self.set_low_precision(low_precision_from)
        self.checkpointing = False

    def set_low_precision(self, min_resolution: int = LOW_PRECISION_MIN_RESOLUTION,
                          min_channels: int = LOW_PRECISION_MIN_CHANNELS) -> None:
        """Under autocast, run in the autocast dtype the convolutions whose output resolution is
        at least `min_resolution` and whose input and output both have at least `min_channels`
        channels; every other part stays fp32 (min_resolution above `size`: all of it). Without
        autocast this changes nothing."""
        self.low_precision_policy = {"min_resolution": min_resolution, "min_channels": min_channels}
        for res, layer in self.styled_convs():
            conv = layer.conv
            conv.low_precision = res >= min_resolution and min(conv.in_channel, conv.out_channel) >= min_channels

    @contextlib.contextmanager
    def precision_policy(self, use: str) -> Iterator[None]:
        """Within the context, the convolutions of PRECISION_POLICIES[use] ("sampling" or
        "training") run in the autocast dtype; the model's own policy is restored after."""
        before = dict(self.low_precision_policy)
        self.set_low_precision(**PRECISION_POLICIES[use])
        try:
            yield
        finally:
            self.set_low_precision(**before)

    def styled_convs(self) -> list[tuple[int, StyledConv]]:
        """(output resolution, layer) of every modulated 3x3 convolution, in order."""
        return [(4, self.conv1)] + [(2 ** (3 + i // 2), conv) for i, conv in enumerate(self.convs)]

    # ----------------------------------------------------------------- configuration and files
    def export_config(self) -> dict:
        return {"size": self.size, "style_dim": self.style_dim, "n_mlp": self.n_mlp,
                "channels": {str(res): width for res, width in self.channels.items()},
                "lr_mlp": self.lr_mlp, "blur_kernel": list(self.blur_kernel)}

    @classmethod
    def recognizes(cls, path: Path) -> bool:
        return checkpoint.recognizes(path)

    @classmethod
    def from_checkpoint(cls, path: str | Path, **options) -> "StyleGAN2Generator":
        """rosinality .pt/.pth (dict with 'g_ema' and optionally 'latent_avg', or a bare state dict),
        a mocohd .safetensors written by `save_safetensors` / `mocohd convert`, or an NVIDIA
        StyleGAN2-ADA .pkl (through a restricted unpickler).

        Options: channels_last (bool, default True): memory layout used when synthesizing;
        lr_mlp (default 0.01): the mapping network's learning-rate multiplier, which the tensors
        cannot reveal (only for checkpoints trained with another value).
        """
        return checkpoint.load_generator(cls, Path(path), **options)

    def save_safetensors(self, path: str | Path, **metadata) -> Path:
        """The weights (state dict + latent_avg) and config as one mocohd .safetensors file."""
        return checkpoint.save_generator(self, Path(path), **metadata)

    def set_latent_avg(self, latent_avg: Tensor | None, source: str = "checkpoint") -> None:
        if latent_avg is None:
            self.latent_avg, self.latent_avg_source = None, None
            return
        latent_avg = latent_avg.detach().float().reshape(-1, latent_avg.shape[-1]).mean(0)
        if latent_avg.shape != (self.style_dim,):
            raise MocohdError(f"latent_avg has {latent_avg.shape[-1]} values but the generator's W has "
                              f"{self.style_dim}", fix="save the checkpoint's own latent_avg with it")
        self.latent_avg = latent_avg.to(self.device)
        self.latent_avg_source = source

    # ----------------------------------------------------------------------------- mapping
    def mean_latent(self) -> Tensor:
        """The mean of W used for truncation ([style_dim]).

        The checkpoint's `latent_avg` when it has one. Otherwise it is estimated once as the mean
        of mapping(z) over 4096 z drawn with seed 0 (deterministic for given weights), cached,
        and `latent_avg_source` is set to "estimated".
        """
        if self.latent_avg is None:
            gen = torch.Generator().manual_seed(MEAN_LATENT_SEED)
            z = torch.randn(MEAN_LATENT_SAMPLES, self.style_dim, generator=gen).to(self.device)
            with torch.no_grad():
                w = torch.cat([self.style(chunk) for chunk in z.split(1024)])
            self.set_latent_avg(w.mean(0), source="estimated")
        return self.latent_avg

    def mapping(self, z: Tensor) -> Tensor:
        """z [N, style_dim] -> w [N, style_dim], pulled towards the mean w when truncation < 1."""
        w = self.style(z)
        if self.truncation != 1.0:
            avg = self.mean_latent().to(w.dtype)
            w = avg + self.truncation * (w - avg)
        return w

    # --------------------------------------------------------------------------- synthesis
    def make_noise(self, n: int, *, rng: torch.Generator | None = None) -> list[Tensor]:
        """Fresh noise maps, one [n, 1, r, r] tensor per layer, drawn on the generator's device."""
        draw_device = rng.device if rng is not None else self.device
        return [torch.randn(n, 1, res, res, generator=rng, device=draw_device).to(self.device)
                for res in noise_resolutions(self.size)]

    def stored_noise(self) -> list[Tensor]:
        return [getattr(self.noises, f"noise_{i}") for i in range(self.num_layers)]

    def render(self, w: Tensor, noise: Sequence[Tensor | None]) -> Tensor:
        """w [N, style_dim] (one code for every layer) or [N, n_latent, style_dim] (a code per styled layer,
        in the order conv 4 px, toRGB 4 px, then per resolution its two convs and toRGB, the toRGB sharing
        its code with the next resolution's first conv, as rosinality's layout numbers them: style
        mixing) -> images [N, 3, size, size]; noise: one map per layer ([N or 1, 1, r, r]) or None
        entries for no noise. Differentiable with respect to w and the parameters."""
        per_layer = w.ndim == 3 and w.shape[1] == self.n_latent
        if not (w.ndim == 2 or per_layer) or w.shape[-1] != self.style_dim:
            raise MocohdError(f"StyleGAN2 latents must be [N, {self.style_dim}] or [N, {self.n_latent}, "
                              f"{self.style_dim}], got {list(w.shape)}",
                              fix="pass W-space codes of the generator's style_dim")
        code = (lambda k: w[:, k]) if per_layer else (lambda k: w)
        n = w.shape[0]
        # Without autograd the layers may overwrite their inputs (each feature map has one
        # consumer left when it is overwritten: toRGB reads it before the next conv does).
        inplace = not torch.is_grad_enabled() or not (
            w.requires_grad or any(p.requires_grad for p in self.parameters()))
        memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        x = self.input.input.repeat(n, 1, 1, 1).contiguous(memory_format=memory_format)  # a copy: may be overwritten
        x = self.conv1(x, code(0), noise[0], inplace=inplace)
        skip = self.to_rgb1(x, code(1), input_gain=LRELU_GAIN)
        # Checkpointed, autograd keeps only each resolution's input (x and the RGB skip) and
        # recomputes the block in the backward pass: the same gradients for about a third more work.
        checkpointed = self.checkpointing and not inplace and torch.is_grad_enabled()
        for i in range(len(self.to_rgbs)):
            codes = (code(2 * i + 1), code(2 * i + 2), code(2 * i + 3))
            if checkpointed:
                x, skip = activation_checkpoint.checkpoint(self._block, i, x, skip, codes, noise, use_reentrant=False)
            else:
                x, skip = self._block(i, x, skip, codes, noise, inplace=inplace)
        return skip.float().contiguous()

    def _block(self, i: int, x: Tensor, skip: Tensor, codes: tuple[Tensor, Tensor, Tensor],
               noise: Sequence[Tensor | None], *, inplace: bool = False) -> tuple[Tensor, Tensor]:
        """Resolution 2^(i + 3): the up-sampling conv, the conv and the toRGB added to the skip, each
        modulated by its code."""
        x = self.convs[2 * i](x, codes[0], noise[2 * i + 1], input_gain=LRELU_GAIN, inplace=inplace)
        x = self.convs[2 * i + 1](x, codes[1], noise[2 * i + 2], input_gain=LRELU_GAIN, inplace=inplace)
        return x, self.to_rgbs[i](x, codes[2], skip, input_gain=LRELU_GAIN)

    def set_checkpointing(self, enabled: bool = True) -> None:
        """Gradient checkpointing of the synthesis (training through the frozen generator at high
        resolution): activations are kept per resolution instead of per operation."""
        self.checkpointing = enabled

    def forward(self, z: Tensor, *, noise: str = "random", rng: torch.Generator | None = None,
                mix: tuple[Tensor, int] | None = None) -> Tensor:
        """Plain (trainable) generation from z: [N, style_dim] -> [N, 3, size, size], one noise
        draw per image. Used for GAN pre-training. `mix` = (z2, k): style mixing, z's code drives
        the styled layers before k and z2's the rest (see `render` for their order)."""
        self.check_noise_mode(noise)
        w = self.mapping(z)
        if mix is not None:
            z2, crossover = mix
            w = self.mixed_codes(w, self.mapping(z2), crossover)
        return self.render(w, self._noise(noise, z.shape[0], 1, rng))

    def mixed_codes(self, first: Tensor, second: Tensor, crossover: int) -> Tensor:
        """Two codes [N, style_dim] -> per-layer codes [N, n_latent, style_dim] for `render`: `first` in the
        styled layers before `crossover`, `second` in the rest (style mixing)."""
        if not 0 < crossover < self.n_latent:
            raise ValueError(f"the crossover layer must be in 1..{self.n_latent - 1}, got {crossover}")
        return torch.cat([first[:, None].expand(-1, crossover, -1),
                          second[:, None].expand(-1, self.n_latent - crossover, -1)], dim=1)

    def synthesize(self, latents: Tensor, *, condition: Tensor | None = None, noise: str = "random",
                   rng: torch.Generator | None = None) -> Tensor:
        """latents [B, T, style_dim] (W) -> frames [B, T, 3, size, size], about [-1, 1].

        All B*T frames go through the network in one batch. noise: "random" draws one set of
        noise maps per video (with `generator`) shared by its T frames, "const" uses the stored
        buffers, "none" adds no noise.
        """
        self.check_noise_mode(noise)
        if condition is not None:
            raise MocohdError("StyleGAN2 is unconditional: it takes no class condition")
        if latents.ndim != 3:
            raise MocohdError(f"synthesize expects latents [B, T, {self.style_dim}], got {list(latents.shape)}")
        b, t, d = latents.shape
        frames = self.render(latents.reshape(b * t, d), self._noise(noise, b, t, rng))
        return frames.view(b, t, 3, self.size, self.size)

    def _noise(self, mode: str, videos: int, frames: int, rng: torch.Generator | None) -> list:
        if mode == "none":
            return [None] * self.num_layers
        if mode == "const":
            return self.stored_noise()
        maps = self.make_noise(videos, rng=rng)
        if frames == 1:
            return maps
        return [m[:, None].expand(-1, frames, -1, -1, -1).reshape(videos * frames, 1, *m.shape[2:]) for m in maps]
