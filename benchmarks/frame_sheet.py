"""A frame sheet of a motion model: chosen frames of several long videos, one video per row (the PNGs in docs/).

    python benchmarks/frame_sheet.py --motion example:faces --out docs/example_faces_frames.png
    python benchmarks/frame_sheet.py --motion RUN/motion.safetensors --videos 6 --frames 64 --seed 3 --out sheet.png

Videos are sampled as `mocohd sample` samples them (same seeds, same videos); columns are frames
0, 4, 8, 16, 32, 48 and the last, each labelled.
"""
from __future__ import annotations

import argparse

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--motion", required=True, help="a motion file, run folder or example:NAME")
    parser.add_argument("--videos", type=int, default=6)
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--scale", type=int, default=2, help="pixels per backbone pixel")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    from PIL import Image, ImageDraw

    from mocohd_cli.data.video import quantize
    from mocohd_cli.models.generation import generate_videos
    from mocohd_cli.models.motion import load_motion_and_backbone

    backbone, motion, _ = load_motion_and_backbone(args.motion)
    with torch.no_grad():
        videos = generate_videos(backbone, motion, num_videos=args.videos, n_frames=args.frames, seed=args.seed)
    frames = quantize(videos)  # [N, T, 3, H, W] uint8
    columns = sorted({t for t in (0, 4, 8, 16, 32, 48) if t < args.frames} | {args.frames - 1})
    side = frames.shape[-1] * args.scale
    label = 14
    sheet = Image.new("RGB", (len(columns) * (side + 2), label + args.videos * (side + 2)), "white")
    draw = ImageDraw.Draw(sheet)
    for c, t in enumerate(columns):
        draw.text((c * (side + 2) + 2, 1), f"frame {t}", fill="black")
        for r in range(args.videos):
            image = Image.fromarray(frames[r, t].permute(1, 2, 0).numpy()).resize((side, side), Image.NEAREST)
            sheet.paste(image, (c * (side + 2), label + r * (side + 2)))
    sheet.save(args.out)
    print(f"{args.out}: frames {columns} of {args.videos} videos of {args.motion}")


if __name__ == "__main__":
    main()
