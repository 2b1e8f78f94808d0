"""Which of a StyleGAN2 backbone's layers decide the domain's motion factors, and which its content factors.

For every crossover layer k, images are rendered with one code (A) in the styled layers before k
and another (B) in the rest (style mixing), and read with the domain's factor reader
(docs/evaluation_groundtruth.md). For the motion factors (a face's yaw, mouth, ...) and the
content factors (its colours, hair style, ...) apart, the table gives the share the mix takes from
A: |mix - B| / (|mix - A| + |mix - B|), averaged over factors and image pairs (1: all from A, the
coarse code; 0: all from B). A backbone whose layers separate the two has a crossover where the
motion factors still come from A and the content factors already from B: a motion model that
moved only the layers before it would move heads without changing their colours.

    python benchmarks/layer_locality.py                                   # the shipped faces backbone
    python benchmarks/layer_locality.py --checkpoint example:faces run/generator.safetensors

Prints a Markdown table: one row per (checkpoint, crossover).
"""
from __future__ import annotations

import argparse

import torch


def locality(checkpoint: str, domain: str, pairs: int, seed: int) -> list[dict]:
    from mocohd_cli.evaluation.readers import load_reader
    from mocohd_cli.models.backbone import load_backbone

    backbone = load_backbone(None, checkpoint).freeze()
    if not hasattr(backbone, "n_latent"):
        raise SystemExit(f"{checkpoint}: not a StyleGAN2 backbone (no per-layer codes)")
    reader = load_reader(domain, backbone.resolution)
    n_motion = len(reader.motion_names)
    rng = torch.Generator().manual_seed(seed)
    a, b = backbone.sample_latent(pairs, rng=rng), backbone.sample_latent(pairs, rng=rng)
    noise = backbone.stored_noise()

    def read(codes: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            frames = backbone.render(codes, noise)
        u8 = ((frames.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        return reader.run(u8[:, None], batch_size=128)[0][:, 0].double()

    read_a, read_b = read(a), read(b)
    rows = []
    for k in range(1, backbone.n_latent):
        mixed = read(backbone.mixed_codes(a, b, k))
        to_a, to_b = (mixed - read_a).abs(), (mixed - read_b).abs()
        total = to_a + to_b
        # a factor that reads the same for A and B says nothing about where the mix took it from: 0.5
        share = torch.where(total > 1e-6, to_b / total.clamp_min(1e-9), torch.full_like(total, 0.5))
        rows.append({"k": k, "motion": share[:, :n_motion].mean().item(), "content": share[:, n_motion:].mean().item()})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", nargs="+", default=["example:faces"], help="StyleGAN2 backbones to measure")
    parser.add_argument("--domain", default="faces")
    parser.add_argument("--pairs", type=int, default=256, help="image pairs (A, B) per crossover")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print("| checkpoint | crossover k | motion factors from A (coarse) | content factors from A | difference |")
    print("| --- | --- | --- | --- | --- |")
    for checkpoint in args.checkpoint:
        for row in locality(checkpoint, args.domain, args.pairs, args.seed):
            print(f"| {checkpoint} | {row['k']} | {row['motion']:.2f} | {row['content']:.2f} | "
                  f"{row['motion'] - row['content']:+.2f} |", flush=True)


if __name__ == "__main__":
    main()
