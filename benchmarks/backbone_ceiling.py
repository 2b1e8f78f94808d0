"""What a backbone can show of its domain's motion: real videos projected through it, read back.

Each real video of a procedural domain is projected into the backbone's latent space frame by frame
(mocohd_cli.models.inversion.project_videos: frame t starts from frame t-1's latent and is pulled
towards frame 0's), rendered, and the renderings are measured with the ground-truth metrics
against the real videos themselves (docs/evaluation_groundtruth.md). A motion model moves the
latents of this backbone and nothing else, so the motion that survives the projection (amplitude
and speed ratios per factor) is about the most a motion model on this backbone can show, and the
projection's identity drift is the least it can keep (up to how well the projection fits).
The frames FD of the projections says how close the backbone's images come to the real frames.

    python benchmarks/backbone_ceiling.py                            # the shipped faces backbone
    python benchmarks/backbone_ceiling.py --checkpoint run/generator.safetensors --videos 64
    python benchmarks/backbone_ceiling.py --anchor-weight 0.05       # one setting only

Prints a Markdown table: one row per (checkpoint, anchor weight, motion weight).
"""
from __future__ import annotations

import argparse
import itertools
import time

import torch


def project_and_measure(checkpoint: str, domain: str, real: torch.Tensor, *, steps: int, first_steps: int,
                        anchor_weight: float, motion_weight: float = 0.0) -> dict:
    from mocohd_cli.data.video import quantize
    from mocohd_cli.evaluation import groundtruth as gt
    from mocohd_cli.evaluation.readers import load_reader
    from mocohd_cli.models.backbone import load_backbone
    from mocohd_cli.models.inversion import project_videos

    backbone = load_backbone(None, checkpoint).freeze()
    start = time.perf_counter()
    videos = real.float() / 127.5 - 1
    projection = project_videos(backbone, videos, first_steps=first_steps, steps=steps, anchor_weight=anchor_weight,
                                 motion_weight=motion_weight)
    seconds = time.perf_counter() - start
    frames = quantize(projection.frames)
    metrics = gt.groundtruth_metrics(load_reader(domain), real, frames)
    metrics["psnr"] = float(projection.psnr.median())
    metrics["seconds"] = seconds
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", nargs="+", default=["example:faces"], help="backbones to measure")
    parser.add_argument("--domain", default="faces")
    parser.add_argument("--videos", type=int, default=64)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--time-step", type=int, default=2, help="rendered frames per projected frame (as training)")
    parser.add_argument("--steps", type=int, default=None, help="inversion steps per frame after the first")
    parser.add_argument("--first-steps", type=int, default=200)
    parser.add_argument("--anchor-weight", type=float, nargs="+", default=[0.0, 0.05],
                        help="pull of each frame's latent towards frame 0's; one row each")
    parser.add_argument("--motion-weight", type=float, nargs="+", default=[0.0],
                        help="extra weight of the pixels that moved (mocohd_cli.models.inversion.motion_pixel_weights); "
                             "one row each")
    parser.add_argument("--seed", type=int, default=1_000_123, help="domain seed of the real videos")
    args = parser.parse_args()
    from mocohd_cli.evaluation import groundtruth as gt
    from mocohd_cli.models.inversion import DEFAULT_VIDEO_STEPS

    steps = args.steps if args.steps is not None else DEFAULT_VIDEO_STEPS
    rendered = (args.frames - 1) * args.time_step + 1
    real = gt.render_real(args.domain, args.videos, rendered, 64, seed=args.seed)[:, ::args.time_step]
    factors = None
    rows = []
    for checkpoint in args.checkpoint:
        for weight, motion_weight in itertools.product(args.anchor_weight, args.motion_weight):
            m = project_and_measure(checkpoint, args.domain, real, steps=steps, first_steps=args.first_steps,
                                    anchor_weight=weight, motion_weight=motion_weight)
            factors = factors or sorted(k.split("/", 1)[1] for k in m if k.startswith("amplitude_ratio/"))
            cells = [f"{m[f'amplitude_ratio/{f}']:.2f}" for f in factors]
            rows.append(f"| {checkpoint} | {weight:g} | {motion_weight:g} | {m['psnr']:.1f} | {m['amplitude_ratio']:.2f} | "
                        + " | ".join(cells) + f" | {m['speed_ratio']:.2f} | {m['identity_drift_ratio']:.2f} | "
                        f"{m['fid']:.1f} | {m['seconds']:.0f} |")
            print(rows[-1], flush=True)
    print(f"\n{args.videos} real {args.domain} videos of {args.frames} frames (one in every {args.time_step} rendered "
          f"frame), projected with {args.first_steps} steps for frame 0 and {steps} per later frame; ratios are "
          "projection / real\n")
    print("| checkpoint | anchor weight | motion weight | PSNR (dB) | amplitude | " + " | ".join(factors)
          + " | speed | identity drift | frames FD | seconds |")
    print("| --- " * (len(factors) + 9) + "|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
