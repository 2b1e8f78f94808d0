"""Can a backbone move each motion factor of its own images as far as the real videos do, and keep
the identity? The factor reader, used as an oracle, says where to go.

For each motion factor of a procedural domain (a face's yaw, mouth opening, ...) and each of N
sampled images, the latent w is optimised from the image's own w0 so that the reader reads that
factor moved by the real videos' typical range within a video (the mean over real videos of its
max - min over 16 frames, towards the side of the data's mean), with every other factor, motion and
content, held where w0 has it. The edited frames are then read like a generated video's frame t
against its frame 0.

This bounds what a motion model on the backbone could show from above, where
`backbone_ceiling.py` (real videos projected with a pixel loss) bounds it from below: the projection
keeps what a pixel loss can find, the edit what the backbone can draw. A reader can be fooled by
images no one would call an open mouth, so look at the grid this writes (--out: row 0 the sampled
images, then one row per factor, in the table's order).

    python benchmarks/backbone_edit_ceiling.py                                  # the shipped faces backbone
    python benchmarks/backbone_edit_ceiling.py --checkpoint example:robots --domain robots

Prints a Markdown table: one row per motion factor. Diagnostic only: the reader is the evaluation's
instrument, and nothing in training may use it.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="example:faces")
    parser.add_argument("--domain", default="faces")
    parser.add_argument("--images", type=int, default=32, help="sampled images edited per factor")
    parser.add_argument("--steps", type=int, default=150, help="Adam steps per factor")
    parser.add_argument("--lr", type=float, default=0.02)
    parser.add_argument("--content-weight", type=float, default=4.0,
                        help="weight of holding the content factors against moving the target factor")
    parser.add_argument("--out", default="backbone_edit_ceiling.png", help="grid of the edits (PNG)")
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()

    from mocohd_cli.data.video import quantize
    from mocohd_cli.evaluation import groundtruth as gt
    from mocohd_cli.evaluation.readers import load_reader
    from mocohd_cli.models.backbone import load_backbone
    from mocohd_cli.workflows.backbone_grid import write_image_grid

    backbone = load_backbone(None, args.checkpoint).freeze()
    reader = load_reader(args.domain, backbone.resolution).requires_grad_(False)
    real = gt.render_real(args.domain, 64, 31, backbone.resolution, 1_000_000)[:, ::2]  # as the metrics pace them
    real_factors = gt.read_videos(reader, real).factors
    motion = reader.usable(reader.motion_names)
    content = [reader.factor_names.index(n) for n in reader.usable(reader.content_names)]
    real_drift = float(gt.identity_drift(real_factors[..., content]).mean())

    def render(w: torch.Tensor) -> torch.Tensor:
        return backbone.synthesize(w[:, None], noise="const")[:, 0]

    def read(frames: torch.Tensor) -> torch.Tensor:  # differentiable: float frames in [-1, 1]
        return reader((frames.clamp(-1, 1) + 1) * 127.5)[0]

    w0 = backbone.sample_latent(args.images, rng=torch.Generator().manual_seed(args.seed)).detach()
    with torch.no_grad():
        start = render(w0)
        f0 = read(start)
    rows, grid = [], [start[:8]]
    began = time.perf_counter()
    for name in motion:
        k = reader.factor_names.index(name)
        span = float((real_factors[..., k].max(1) - real_factors[..., k].min(1)).mean())
        towards = torch.where(f0[:, k] < float(real_factors[..., k].mean()), 1.0, -1.0)
        target = f0[:, k] + towards * span
        others = [j for j in (reader.factor_names.index(m) for m in motion) if j != k]
        w = w0.clone().requires_grad_(True)
        optimiser = torch.optim.Adam([w], lr=args.lr)
        for _ in range(args.steps):
            f = read(render(w))
            loss = ((f[:, k] - target) ** 2).mean() + ((f[:, others] - f0[:, others]) ** 2).mean() \
                + args.content_weight * ((f[:, content] - f0[:, content]) ** 2).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        with torch.no_grad():
            edited = render(w)
        # read as the metrics read generated videos: uint8 frames, frame 0 and the edit
        pair = gt.read_videos(reader, torch.stack([quantize(start), quantize(edited)], 1)).factors
        towards_np = towards.numpy()
        rows.append({
            "factor": name, "span": span,
            "reached": float((towards_np * (pair[:, 1, k] - pair[:, 0, k])).mean() / span),
            "content": float(np.abs(pair[:, 1, content] - pair[:, 0, content]).mean()) / real_drift,
            "others": float(np.abs(pair[:, 1, others] - pair[:, 0, others]).mean()),
            "step": float((w.detach() - w0).norm(dim=1).mean()),
        })
        grid.append(edited[:8])

    print(f"{args.checkpoint}: {args.images} sampled images per factor, {args.steps} steps "
          f"({time.perf_counter() - began:.0f} s); content change in units of the real videos' identity drift "
          f"({real_drift:.3f}, the reader's error); other motion factors' change in standardised units\n")
    print("| factor | real range in a video (std units) | share of it reached | content change / real drift | "
          "other motion factors' change | mean |w - w0| |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['factor']} | {r['span']:.2f} | {r['reached']:.2f} | {r['content']:.2f} | {r['others']:.2f} | "
              f"{r['step']:.2f} |")
    write_image_grid(torch.cat(grid), args.out, nrow=len(grid[0]))  # a row per factor
    print(f"\nedits written to {args.out}")


if __name__ == "__main__":
    main()
