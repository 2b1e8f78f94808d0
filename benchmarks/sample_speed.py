"""StyleGAN2 synthesis speed on this machine, against its own 3x3-convolution ceiling.

Measures, in one run:
- the ceiling: GFLOP/s of large 3x3 convolutions (512 -> 512 channels; the best of a few shapes
  and both memory layouts), the best a convolution-bound network can hope for here, timed
  alternately with the generator so that both meet the same load from other processes;
- images/s of the mocohd StyleGAN2 backbone (256 px, channel multiplier 2, 512-d W, 8 mapping
  layers, random weights) in fp32 and under bf16 autocast, and the fraction of the ceiling its
  convolution FLOPs reach;
- the same network through the published formulation (per-sample weights, grouped convolutions;
  the reference the tests check against) for comparison;
- the largest absolute difference of bf16 frames from fp32 frames, on the timed model (random
  weights), on the same architecture with realistic weight scales (`realistic_weights`) and on the
  shipped example backbones, with the default precision policy (plugins/stylegan2/generator.py
  LOW_PRECISION_MIN_RESOLUTION / LOW_PRECISION_MIN_CHANNELS) and with every convolution in bf16; and where
  that error builds up: the error of each layer's output (docs/precision.md).

Usage: python benchmarks/sample_speed.py [--size 256] [--batch 4] [--repeats 3] [--threads N]
       [--low-precision-from RES] [--no-reference] [--no-accuracy]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from mocohd_cli.workflows.builtin import example_backbones
from mocohd_plugins.stylegan2 import StyleGAN2Generator
from mocohd_plugins.stylegan2.generator import LOW_PRECISION_MIN_RESOLUTION
from mocohd_plugins.stylegan2.modulated import StyledConv, ToRGB


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def best_time(fn, repeats: int) -> float:
    """Fastest of `repeats` timed calls after one warm-up call (seconds)."""
    fn()
    return min(timed(fn) for _ in range(repeats))


CEILING_SHAPES = ((8, 512, 32), (4, 512, 64), (16, 512, 16))  # (batch, channels, side)


def ceiling_workload(dtype: torch.dtype, seconds: float = 1.0):
    """The fastest large 3x3 convolution at 512 channels (a few shapes, both memory layouts),
    repeated to last about `seconds` so that it meets the same interference from other processes
    as the generator does. Returns (run, flops of one run)."""
    best = None
    for batch, channels, side in CEILING_SHAPES:
        for layout in (torch.channels_last, torch.contiguous_format):
            x = torch.randn(batch, channels, side, side).to(dtype=dtype, memory_format=layout)
            w = torch.randn(channels, channels, 3, 3).to(dtype=dtype, memory_format=layout)
            flops = 2 * batch * channels ** 2 * 9 * side ** 2
            with torch.no_grad():
                rate = flops / best_time(lambda: F.conv2d(x, w, padding=1), 2)
            if best is None or rate > best[0]:
                best = (rate, x, w, flops)
    rate, x, w, flops = best
    count = max(1, round(seconds * rate / flops))

    def run() -> None:
        with torch.no_grad():
            for _ in range(count):
                F.conv2d(x, w, padding=1)

    return run, flops * count


def generator_flops(model: StyleGAN2Generator) -> float:
    """Multiply-adds x 2 of one image's convolutions, toRGBs and mapping (the arithmetic that
    must be done whatever the formulation; blur, bias and noise are not counted)."""
    flops = 2 * model.n_mlp * model.style_dim ** 2
    res, c_prev = 4, model.channels[4]
    flops += 2 * 9 * c_prev * c_prev * res * res + 2 * 3 * c_prev * res * res
    for i in range(3, model.log_size + 1):
        res, c = 2 ** i, model.channels[2 ** i]
        flops += 2 * 9 * c_prev * c * (res // 2) ** 2  # transposed conv, evaluated at the input size
        flops += 2 * 9 * c * c * res * res + 2 * 3 * c * res * res
        c_prev = c
    return float(flops)


def grouped_reference(model: StyleGAN2Generator):
    """The published formulation (tests/test_stylegan2.py::ref_generator), const noise."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from test_stylegan2 import ref_generator

    state = model.state_dict()
    return lambda w: ref_generator(w, state)


FRAME_STD = 0.43  # the shipped example backbones' frames: std 0.41 (faces) and 0.45 (robots)


@torch.no_grad()
def realistic_weights(model: StyleGAN2Generator, seed: int = 0) -> StyleGAN2Generator:
    """Random weights rescaled to what a trained generator has (the shipped example backbones'
    statistics): style biases about 1.1 +- 0.25 (toRGB 0.95 +- 0.2), activation biases -0.05 +- 0.07,
    RGB biases 0.05 +- 0.04, noise strengths up to 0.1, and toRGB weights scaled so that the frames
    have a standard deviation of FRAME_STD (images in about [-1, 1], where a fresh init spans +-5).
    The 3x3 weights stay N(0, 1): equalised learning rate keeps trained ones near that scale."""
    gen = torch.Generator().manual_seed(seed)

    def draw(param, mean, std):
        param.copy_(torch.randn(param.shape, generator=gen) * std + mean)

    for module in model.modules():
        if isinstance(module, StyledConv):
            draw(module.conv.modulation.bias, 1.1, 0.25)
            draw(module.activate.bias, -0.05, 0.07)
            module.noise.weight.copy_(torch.rand(1, generator=gen) * 0.1)
        elif isinstance(module, ToRGB):
            draw(module.conv.modulation.bias, 0.95, 0.2)
            draw(module.bias, 0.05, 0.04)
    w = model.mapping(torch.randn(8, model.style_dim, generator=gen))
    gain = FRAME_STD / model.synthesize(w[:, None], noise="const").std().item()
    for to_rgb in (model.to_rgb1, *model.to_rgbs):
        to_rgb.conv.weight.mul_(gain)
    return model


def render(model, latents: torch.Tensor, precision: str) -> torch.Tensor:
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        return model.synthesize(latents, noise="const")


def bf16_error(model, latents: torch.Tensor, **policy) -> float:
    """Max abs difference of bf16 frames from fp32 frames under a precision policy
    (set_low_precision's arguments); the model's own policy is restored."""
    before = dict(model.low_precision_policy)
    model.set_low_precision(**policy)
    try:
        return (render(model, latents, "bf16") - render(model, latents, "fp32")).abs().max().item()
    finally:
        model.set_low_precision(**before)


def layer_errors(model, latents: torch.Tensor) -> list[tuple[str, int, bool, float, float]]:
    """(layer, resolution, its conv in bf16, rms of its fp32 output, rms error of its bf16 output)
    for every styled conv and toRGB (the RGB skip so far), in order."""
    captured: dict[str, dict[str, torch.Tensor]] = {"fp32": {}, "bf16": {}}
    current = {"precision": "fp32"}
    names = {module: name for name, module in model.named_modules() if isinstance(module, (StyledConv, ToRGB))}
    hooks = [module.register_forward_hook(
        lambda module, _inputs, out: captured[current["precision"]].__setitem__(names[module], out.float().clone()))
        for module in names]
    try:
        for precision in ("fp32", "bf16"):
            current["precision"] = precision
            render(model, latents, precision)
    finally:
        for hook in hooks:
            hook.remove()
    rows = []
    for module, name in names.items():
        ref, got = captured["fp32"][name], captured["bf16"][name]
        low = isinstance(module, StyledConv) and module.conv.low_precision
        rows.append((name, ref.shape[-1], low, ref.square().mean().sqrt().item(),
                     (got - ref).square().mean().sqrt().item()))
    return rows


def accuracy_report(model: StyleGAN2Generator, latents: torch.Tensor) -> None:
    everything = {"min_resolution": 0, "min_channels": 0}  # every convolution in bf16
    policy = model.low_precision_policy
    print(f"\nbf16 against fp32 (max abs error of the frames; policy: bf16 convolutions from "
          f"{policy['min_resolution']} px up with >= {policy['min_channels']} channels in and out, the rest fp32):")
    realistic = realistic_weights(StyleGAN2Generator(model.size, style_dim=model.style_dim, n_mlp=model.n_mlp,
                                                     channels=model.channels).freeze())
    models = [(f"{model.size} px, random weights", model, latents),
              (f"{model.size} px, realistic weight scales", realistic, latents)]
    for name, path in example_backbones().items():
        backbone = StyleGAN2Generator.from_checkpoint(path).freeze()
        z = torch.randn(latents.shape[0], backbone.style_dim, generator=torch.Generator().manual_seed(1))
        models.append((f"shipped example {path.name}", backbone, backbone.mapping(z).detach()[:, None]))
    for name, generator, codes in models:
        frames = render(generator, codes, "fp32")
        print(f"  {name}: frames span [{frames.min().item():.2f}, {frames.max().item():.2f}]; policy "
              f"{bf16_error(generator, codes, **policy):.4f}, every conv in bf16 "
              f"{bf16_error(generator, codes, **everything):.4f}")
    for title, chosen in (("policy", policy), ("every conv in bf16", everything)):
        realistic.set_low_precision(**chosen)
        print(f"\nper layer, realistic weights, {title} (rms error of each output, relative to its rms):")
        for name, res, low, rms, error in layer_errors(realistic, latents):
            print(f"  {name:10s} {res:5d} px  {'bf16' if low else 'fp32'}  rms {rms:6.3f}  error {error:.5f}"
                  f"  ({error / rms:.2%})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--low-precision-from", type=int, default=LOW_PRECISION_MIN_RESOLUTION,
                        help="output resolution from which the convolutions run in bf16")
    parser.add_argument("--no-reference", action="store_true", help="skip the grouped-conv reference")
    parser.add_argument("--no-accuracy", action="store_true", help="skip the bf16 accuracy report")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = StyleGAN2Generator(args.size, style_dim=512, n_mlp=8, channel_multiplier=2,
                               low_precision_from=args.low_precision_from).freeze()
    latents = model.mapping(torch.randn(args.batch, 512)).detach()[:, None]
    flops = generator_flops(model) * args.batch

    rows, outputs, ceilings = [], {}, {}
    for precision, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        ceiling_run, ceiling_flops = ceiling_workload(dtype)

        def synthesize() -> None:
            outputs[precision] = render(model, latents, precision)

        synthesize()  # warm-up
        # interleaved, so that the ceiling and the generator meet the same interference
        ceiling_times, generator_times = [], []
        for _ in range(args.repeats):
            ceiling_times.append(timed(ceiling_run))
            generator_times.append(timed(synthesize))
        ceilings[precision] = ceiling_flops / min(ceiling_times) / 1e9
        seconds = min(generator_times)
        gflops = flops / seconds / 1e9
        relative = "100%" if precision == "fp32" else f"{ceilings['bf16'] / ceilings['fp32']:.0%} of fp32"
        rows.append(("3x3 conv ceiling (512 ch)", precision, "-", f"{ceilings[precision]:.1f}", relative))
        rows.append((f"mocohd StyleGAN2 {args.size}px, batch {args.batch}", precision,
                     f"{args.batch / seconds:.2f}", f"{gflops:.1f}", f"{gflops / ceilings[precision]:.0%}"))
    if not args.no_reference:
        reference = grouped_reference(model)
        with torch.no_grad():
            seconds = best_time(lambda: outputs.__setitem__("ref", reference(latents[:, 0])), max(1, args.repeats - 1))
        gflops = flops / seconds / 1e9
        rows.append((f"grouped-conv reference {args.size}px", "fp32", f"{args.batch / seconds:.2f}",
                     f"{gflops:.1f}", f"{gflops / ceilings['fp32']:.0%}"))

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{generator_flops(model) / 1e9:.2f} GFLOP per image, load average {os.getloadavg()[0]:.1f} "
          "(other processes on the cores lower every number)")
    header = ("what", "precision", "images/s", "GFLOP/s", "of ceiling")
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(5)]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)))
    fp32 = outputs["fp32"][:, 0]
    print(f"bf16 vs fp32: max abs error {(outputs['bf16'] - outputs['fp32']).abs().max().item():.4f} "
          f"(frames span [{fp32.min().item():.2f}, {fp32.max().item():.2f}])")
    if "ref" in outputs:
        print(f"mocohd vs grouped-conv reference (fp32): max abs difference "
              f"{(fp32 - outputs['ref']).abs().max().item():.2e}")
    print(f"bf16 / fp32 speed: {float(rows[3][2]) / float(rows[1][2]):.2f}x (same run, interleaved)")
    if not args.no_accuracy:
        accuracy_report(model, latents)


if __name__ == "__main__":
    main()
