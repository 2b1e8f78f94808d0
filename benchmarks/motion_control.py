"""Which half limits the learned motion: the data's walks in the latent space, or the motion training?

Every row is a set of latent walks through the same frozen backbone, rendered and scored on the same
evaluation (the faces domain's factor reader against freshly rendered real videos, as `mocohd eval
--metric motion --metric content` does):

  projected, own content    the training videos projected into the backbone (the shipped projections file),
                            replayed as they are: the ceiling of motion that can be learned from this data
  projected, new content    the same walks (w_t - w_0) added to freshly sampled content codes: what a motion
                            model that learned the projected walks' distribution exactly would show
  random xK                 Gaussian random walks in the motion model's basis whose per-frame step matches the
                            projected walks' (K = 1), or K times it: motion with no structure, for comparison
  MODEL                     a trained motion model (each --motion file), sampled as `mocohd sample` does
  MODEL, started at ...     the same model rolled out from the projected videos' first latents: its motion on
                            the data's own content (what the latent phase learns from), against the row above
                            on sampled content (what `mocohd eval` scores)

Each is a point on the drift-per-amplitude plane (x: mean amplitude ratio over the motion factors, y:
identity drift ratio over the same 16 frames). A trained model far below the projected points is limited by
its training; one at the projected points is limited by the data and the backbone.

    python benchmarks/motion_control.py                                  # shipped faces model, 64 videos
    python benchmarks/motion_control.py --videos 256 --motion RUN/motion.safetensors --plot docs/motion_control.png
    python benchmarks/motion_control.py --project-data heldout --motion RUN/motion.safetensors   # unseen faces

Prints a Markdown table; --plot writes the plane as a PNG.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

FRAMES, TIME_STEP = 16, 2


def score(reader, real_read, videos: torch.Tensor) -> dict:
    from mocohd_cli.data.video import quantize
    from mocohd_cli.evaluation.groundtruth import content_metrics, motion_metrics, read_videos

    fake = read_videos(reader, quantize(videos))
    motion = motion_metrics(reader, real_read, fake)
    content = content_metrics(reader, real_read, fake)
    return {"amplitude": motion["amplitude_ratio"], "speed": motion["speed_ratio"], "ffd": motion["ffd"],
            "drift": content["identity_drift_ratio"]}


def render_walks(backbone, walks: torch.Tensor, seed: int) -> torch.Tensor:
    """Frames [N, T, 3, H, W] of latent walks [N, T, D], one synthesis-noise stream per video."""
    from mocohd_cli.models.generation import LatentBatch, render, synthesis_seeds

    n = walks.shape[0]
    batch = LatentBatch(0, walks[:, 0], torch.zeros(n, 0, walks.shape[2]), walks,
                        torch.tensor(synthesis_seeds(seed, range(n))))
    return render(backbone, batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="example:faces", help="the backbone")
    parser.add_argument("--projections", default=None, help="projected training videos (default: the shipped ones)")
    parser.add_argument("--project-data", default=None, metavar="DATA",
                        help="project these videos into the backbone instead (cached), e.g. held-out videos "
                             "the models never saw: `mocohd data make faces --out heldout --frames 32 --seed 11`")
    parser.add_argument("--motion", nargs="*", default=None, help="trained motion models (default: the shipped one)")
    parser.add_argument("--videos", type=int, default=64)
    parser.add_argument("--scales", type=float, nargs="+", default=[0.5, 1.0, 2.0], help="random-walk step scales")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", default=None, help="write the drift-per-amplitude plane to this PNG")
    args = parser.parse_args()

    from mocohd_cli.evaluation.groundtruth import read_videos, render_real
    from mocohd_cli.evaluation.readers import load_reader
    from mocohd_cli.evaluation.run import GROUND_TRUTH_REAL_SEED
    from mocohd_cli.models.backbone import load_backbone
    from mocohd_cli.models.generation import generate_videos
    from mocohd_cli.models.latent_prior import read_projections
    from mocohd_cli.models.motion import load_motion
    from mocohd_cli.workflows.builtin import ASSETS, example_motion, projections_file

    torch.manual_seed(args.seed)
    backbone = load_backbone(None, args.checkpoint).freeze()
    reader = load_reader("faces")
    real = render_real("faces", args.videos, (FRAMES - 1) * TIME_STEP + 1, reader.size,
                       seed=GROUND_TRUTH_REAL_SEED + args.seed)[:, ::TIME_STEP]
    real_read = read_videos(reader, real)
    if args.project_data:
        from mocohd_cli.training.projections import project_training_videos

        projected = project_training_videos(backbone, args.project_data, frames=FRAMES, time_step=TIME_STEP,
                                            size=backbone.resolution, count=args.videos)[:, :FRAMES]
    else:
        projected = read_projections(args.projections or ASSETS / projections_file("faces"),
                                     backbone_sha256=backbone.checkpoint_sha256, time_step=TIME_STEP, frames=FRAMES,
                                     latent_dim=backbone.latent_dim)[:, :FRAMES]
    motions = args.motion if args.motion is not None else [str(example_motion("faces"))]
    n = args.videos
    index = torch.arange(n) % projected.shape[0]          # the projections are reused when n is larger
    walks_real = projected[index]
    moves = walks_real - walks_real[:, :1]
    rng = torch.Generator().manual_seed(args.seed)
    content = backbone.sample_latent(n, rng=rng).float()

    rows = []

    def add(name: str, walks: torch.Tensor | None = None, videos: torch.Tensor | None = None) -> None:
        start = time.perf_counter()
        videos = render_walks(backbone, walks, args.seed) if videos is None else videos
        rows.append({"source": name, **score(reader, real_read, videos), "seconds": time.perf_counter() - start})
        print(f"  {name}: done", flush=True)

    add("projected, own content", walks_real)
    add("projected, new content", content[:, None] + moves)
    # random walks in the first shipped model's basis, with the projected walks' mean step length in it
    basis_model = load_motion(motions[0], backbone)
    basis = basis_model.basis.float()                       # diag(s) P [n_pca, D]
    steps_pca = torch.linalg.lstsq(basis.T, (moves[:, 1:] - moves[:, :-1]).reshape(-1, moves.shape[2]).T).solution.T
    step_norm = steps_pca.norm(dim=1).mean()
    for scale in args.scales:
        draws = torch.randn(n, FRAMES - 1, basis.shape[0], generator=rng)
        draws = draws / draws.norm(dim=2, keepdim=True) * step_norm * scale
        walk = torch.cat([torch.zeros(n, 1, basis.shape[0]), draws.cumsum(1)], 1) @ basis
        add(f"random x{scale:g}", content[:, None] + walk)
    for path in motions:
        motion = load_motion(path, backbone).eval()
        with torch.no_grad():
            videos = generate_videos(backbone, motion, num_videos=n, n_frames=FRAMES, seed=args.seed)
            own = motion.rollout(walks_real[:, 0], FRAMES, rng=torch.Generator().manual_seed(args.seed)).latents
        add(f"model {path}", videos=videos)
        add(f"model {path}, started at the projected frames 0", own.float())

    print(f"\n{n} videos of {FRAMES} frames (time step {TIME_STEP}) per row, backbone {args.checkpoint}\n")
    print("| source | amplitude | speed | identity drift | drift per amplitude | ffd |")
    print("| --- | --- | --- | --- | --- | --- |")
    for row in rows:
        per = row["drift"] / row["amplitude"] if row["amplitude"] > 0 else float("nan")
        print(f"| {row['source']} | {row['amplitude']:.3f} | {row['speed']:.3f} | {row['drift']:.3f} | {per:.2f} "
              f"| {row['ffd']:.1f} |")
    if args.plot:
        plot_plane(rows, args.plot)
        print(f"\nplane: {args.plot}")


def plot_plane(rows: list[dict], path: str) -> None:
    """The rows as points on the amplitude / identity-drift plane, drawn with Pillow (no plotting library)."""
    from PIL import Image, ImageDraw

    width, height, margin = 720, 480, 60
    xmax = max(1.0, max(r["amplitude"] for r in rows) * 1.1)
    ymax = max(2.0, max(r["drift"] for r in rows) * 1.1)
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)

    def at(x: float, y: float) -> tuple[float, float]:
        return (margin + x / xmax * (width - 2 * margin), height - margin - y / ymax * (height - 2 * margin))

    draw.line([at(0, 0), at(xmax, 0)], fill="black")
    draw.line([at(0, 0), at(0, ymax)], fill="black")
    for tick in np.arange(0, xmax + 1e-9, 0.2):
        x, y = at(tick, 0)
        draw.line([(x, y), (x, y + 4)], fill="black")
        draw.text((x - 8, y + 6), f"{tick:.1f}", fill="black")
    for tick in np.arange(0, ymax + 1e-9, 0.5):
        x, y = at(0, tick)
        draw.line([(x - 4, y), (x, y)], fill="black")
        draw.text((x - 30, y - 6), f"{tick:.1f}", fill="black")
    draw.line([at(0, 1), at(xmax, 1)], fill=(200, 200, 200))          # the reader's own error floor
    draw.text((width / 2 - 120, height - 22), "amplitude ratio (generated / real)", fill="black")
    draw.text((8, 8), "identity drift ratio (16 frames)", fill="black")
    colours = {"projected": (0, 110, 200), "random": (150, 150, 150), "model": (210, 60, 30)}
    for row in rows:
        colour = next(c for key, c in colours.items() if row["source"].startswith(key))
        x, y = at(row["amplitude"], row["drift"])
        draw.ellipse([x - 5, y - 5, x + 5, y + 5], fill=colour)
        label = row["source"] if not row["source"].startswith("model") else "model " + row["source"].split("/")[-1]
        draw.text((x + 8, y - 6), label, fill=colour)
    image.save(path)


if __name__ == "__main__":
    main()
