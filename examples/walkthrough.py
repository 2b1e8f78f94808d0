"""A walk-through of mocohd on the procedural example domains, from Python.

    python examples/walkthrough.py                 # all three parts, short settings (CPU friendly)
    python examples/walkthrough.py --part in-domain
    python examples/walkthrough.py --part cross-domain
    python examples/walkthrough.py --part pretrain  # a backbone from scratch, then motion on it

Parts:
  in-domain     the shipped "faces" backbone learns the motion of rendered talking cartoon faces
                (what `mocohd train` does with no arguments), then samples videos from it.
  cross-domain  the shipped "robots" backbone learns to move like the talking faces: its frames
                never look like the videos, so the cross-domain objective is used (`mocohd transfer`).
  pretrain      renders a time-lapse-sky dataset, pre-trains a small StyleGAN2 on its frames for a
                few hundred steps (`mocohd pretrain`), and trains a motion model on that backbone.
                Real quality needs thousands of steps; see docs/examples.md for the settings of
                the shipped backbones.

The same steps on the command line are listed in docs/examples.md.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from mocohd_cli import load_backbone
from mocohd_cli.workflows import builtin
from mocohd_cli.data.domains import make_dataset
from mocohd_cli.infra.errors import MocohdError
from mocohd_cli.models.motion import load_motion
from mocohd_cli.infra.runs import RunDir
from mocohd_cli.workflows.backbone_grid import backbone_grid
from mocohd_plugins.stylegan2.pretrain import PretrainConfig, pretrain
from mocohd_cli.models.generation import generate_videos
from mocohd_cli.training import TrainConfig, train
from mocohd_cli.data.video import write_videos


def sample(motion_path: Path, out: Path, *, frames: int = 16) -> list[Path]:
    """Four videos from a trained motion model (its backbone is recorded in the file)."""
    from mocohd_cli.models.motion import read_motion_info

    info = read_motion_info(motion_path)
    backbone = load_backbone(info.get("backbone"), info["backbone_checkpoint"])
    motion = load_motion(motion_path, backbone).eval()
    videos = generate_videos(backbone, motion, num_videos=4, n_frames=frames, seed=0)
    return write_videos(videos, out, fps=8, fmt="gif", grid=True)


def in_domain(out: Path) -> None:
    print("== in-domain: the faces backbone learns the motion of talking cartoon faces")
    config = builtin.default_train_config(out=str(out / "in-domain"))
    result = train(config)
    print(f"motion model: {result.motion_path}")
    print("samples:", *sample(result.motion_path, out / "in-domain-samples"))


def cross_domain(out: Path) -> None:
    print("== cross-domain: robot heads move like the talking faces")
    try:
        config = builtin.default_transfer_config(out=str(out / "cross-domain"))
        result = train(config)
    except MocohdError as exc:  # e.g. an installation without the cross-domain objective
        print(f"cross-domain training is not available here: {exc}")
        return
    print(f"motion model: {result.motion_path}")
    print("samples:", *sample(result.motion_path, out / "cross-domain-samples"))


def pretrain_from_scratch(out: Path, steps: int) -> None:
    print("== pre-training a sky backbone from scratch, then its motion")
    data = make_dataset("sky", out / "sky-videos", videos=48, frames=32, size=64, seed=0, overwrite=True)
    started = time.time()
    run = out / "sky-backbone"
    config = PretrainConfig(data=str(data), out=str(run), resume=RunDir(run).state.exists(),  # a rerun continues
                            size=64, style_dim=128, n_mlp=4, channels={4: 128, 8: 128, 16: 64, 32: 32, 64: 16},
                            batch_size=8, steps=steps, sample_every=max(1, steps // 4))
    checkpoint = pretrain(config)
    print(f"backbone after {steps} steps ({time.time() - started:.0f} s): {checkpoint}")
    print("sample grid:", backbone_grid(checkpoint, out=str(run / "grid.png"), num_images=16, scale=2))
    motion_config = TrainConfig.from_dict({**builtin.QUICK_SCHEDULE, "checkpoint": str(checkpoint),
                                           "data": str(data), "out": str(out / "sky-motion"),
                                           "n_pca": 64, "h_dim": 64})
    result = train(motion_config)
    print("samples:", *sample(result.motion_path, out / "sky-samples"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("all", "in-domain", "cross-domain", "pretrain"), default="all")
    parser.add_argument("--out", type=Path, default=Path("mocohd-walkthrough"))
    parser.add_argument("--pretrain-steps", type=int, default=300,
                        help="pre-training steps for the from-scratch part (thousands for real quality)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.part in ("all", "in-domain"):
        in_domain(args.out)
    if args.part in ("all", "cross-domain"):
        cross_domain(args.out)
    if args.part in ("all", "pretrain"):
        pretrain_from_scratch(args.out, args.pretrain_steps)


if __name__ == "__main__":
    main()
