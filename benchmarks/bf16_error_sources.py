"""Where bf16 error enters StyleGAN2 synthesis: each rounding point on its own.

The layers' arithmetic is re-run in fp32 with a bf16 rounding (round to bf16 and back) applied at
one chosen point at a time, so that each point's share of the error of the frames is seen alone:

  S   the per-sample style (modulation) scale      D   the demodulation coefficients
  A   the stored activations between layers       X   the modulated convolution input
  W   the convolution weights                     O   the convolution output (and the blur's)
  B   the activation bias                         E   the demodulated, biased output
  N   the output after noise injection            NW  the noise term
  RGB the toRGB input, weights and output          SKIP the RGB skip carried between resolutions

X, W and O are what a bf16 convolution cannot avoid; the rest is what the layers keep in fp32
(plugins/stylegan2/modulated.py). Then X+W+O per layer and from each resolution up, which is
how LOW_PRECISION_MIN_RESOLUTION was chosen (docs/precision.md). Model: the benchmark's
realistic weight scales (benchmarks/sample_speed.py `realistic_weights`), const noise.

Usage: python benchmarks/bf16_error_sources.py [--size 256] [--batch 2]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from mocohd_plugins.stylegan2 import StyleGAN2Generator
from mocohd_plugins.stylegan2.layers import LRELU_GAIN, LRELU_SLOPE

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sample_speed import realistic_weights  # noqa: E402

POINTS = ("S", "A", "X", "W", "O", "B", "D", "E", "N", "NW", "RGB", "SKIP")


def bf16_round(t: torch.Tensor) -> torch.Tensor:
    return t.bfloat16().float()


def emulate(model: StyleGAN2Generator, w: torch.Tensor, points: set[str], layers: set[int] | None = None):
    """Frames with bf16 rounding at `points` (in the styled convs listed in `layers`; all if None)."""
    noise = model.stored_noise()

    def styled(i: int, layer, x: torch.Tensor, gain: float) -> torch.Tensor:
        def r(point: str, t: torch.Tensor) -> torch.Tensor:
            return bf16_round(t) if point in points and (layers is None or i in layers) else t

        conv = layer.conv
        style = conv.modulation(w)
        demod = torch.rsqrt(style.square() @ conv.tap_energy().t() + 1e-8)
        x = r("X", r("A", x) * r("S", style * gain * conv.scale)[:, :, None, None])
        weight = r("W", conv.weight[0])
        if conv.upsample:
            out = conv.blur(r("O", F.conv_transpose2d(x, weight.transpose(0, 1), stride=2)))
        else:
            out = F.conv2d(x, weight, padding=conv.padding)
        out = torch.addcmul(r("B", layer.activate.bias.view(1, -1, 1, 1)), r("O", out), r("D", demod)[:, :, None, None])
        out = r("N", r("E", out) + r("NW", layer.noise.weight * noise[i]))
        return F.leaky_relu(out, LRELU_SLOPE)

    def to_rgb(layer, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        r = bf16_round if "RGB" in points else (lambda t: t)
        style = layer.conv.modulation(w) * LRELU_GAIN * layer.conv.scale
        weight = layer.conv.weight[0, :, :, 0, 0][None] * style[:, None, :]
        out = r(torch.einsum("nchw,noc->nohw", r(x), r(weight))) + layer.bias
        if skip is not None:
            out = out + layer.upsample(bf16_round(skip) if "SKIP" in points else skip)
        return out

    convs = [model.conv1, *model.convs]
    x = styled(0, convs[0], model.input.input.repeat(w.shape[0], 1, 1, 1), 1.0)
    skip = to_rgb(model.to_rgb1, x, None)
    for j, layer in enumerate(model.to_rgbs):
        x = styled(2 * j + 1, convs[2 * j + 1], x, LRELU_GAIN)
        x = styled(2 * j + 2, convs[2 * j + 2], x, LRELU_GAIN)
        skip = to_rgb(layer, x, skip)
    return skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=2)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = realistic_weights(StyleGAN2Generator(args.size, style_dim=512, n_mlp=8, channel_multiplier=2).freeze())
    w = model.mapping(torch.randn(args.batch, 512, generator=torch.Generator().manual_seed(1))).detach()
    resolutions = [res for res, _ in model.styled_convs()]
    with torch.no_grad():
        reference = emulate(model, w, set())
        check = (reference - model.synthesize(w[:, None], noise="const")[:, 0]).abs().max().item()
        print(f"StyleGAN2 {args.size} px, realistic weights, batch {args.batch}; frames span "
              f"[{reference.min().item():.2f}, {reference.max().item():.2f}], rms {reference.square().mean().sqrt().item():.3f}; "
              f"emulation vs the model in fp32: {check:.1e}")

        def report(label: str, points: set[str], layers: set[int] | None = None) -> None:
            error = (emulate(model, w, points, layers) - reference).abs()
            print(f"  {label:34s} max {error.max().item():.4f}  rms {error.square().mean().sqrt().item():.5f}")

        print("one rounding point, every layer:")
        for point in POINTS:
            report(point, {point})
        report("all points (every part in bf16)", set(POINTS))
        report("X+W+O (only the convolutions)", {"X", "W", "O"})
        print("X+W+O in one layer only:")
        for i, res in enumerate(resolutions):
            report(f"layer {i} ({res} px)", {"X", "W", "O"}, {i})
        print("X+W+O from a resolution up:")
        for lowest in sorted(set(resolutions)):
            report(f"from {lowest} px", {"X", "W", "O"}, {i for i, res in enumerate(resolutions) if res >= lowest})


if __name__ == "__main__":
    main()
