"""Ablation of the built-in in-domain example (`mocohd train` with no arguments), measured with the
ground-truth metrics against freshly rendered face videos (docs/examples.md, "Ablation").

Each variant is the example's schedule with a few settings changed; each is trained into
OUT/<variant>/ and evaluated on --videos generated videos of 16 frames (motion, content, frames)
and of --long-frames frames (content: does a long video stay on the domain?). Results are kept in
OUT/<variant>/metrics.json, so a second run only does what is missing. Prints a Markdown table.

    python benchmarks/example_ablation.py --out ablation/          # every variant (about 5 min each on 2 cores)
    python benchmarks/example_ablation.py --out ablation/ --variants default release
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

# name -> (settings changed from the example's schedule, what it tests)
VARIANTS = {
    "untrained": (None, "a freshly initialised motion model (the reference of ffd)"),
    "default": ({}, "the example's schedule as shipped"),
    "seed_1": ({"seed": 1}, "the same with another seed: how far two runs of one setting spread"),
    "no_feedback": ({"motion_feedback": False}, "the LSTM does not read its walk so far (the release's recurrence)"),
    "release": ({"w_drift": 0.0, "drift_horizon": None}, "the release's objective: no shared-drift penalty"),
    "drift_clip_only": ({"drift_horizon": None}, "penalty over the 8 trained frames only"),
    "running_drift": ({"drift_momentum": 0.95}, "the penalty against a running mean of the shared walk"),
    "no_mi": ({"w_mi": 0.0}, "no mutual-information loss"),
    "no_pca": ({"pca": False, "pca_source": "latents"}, "identity basis, unit scale, instead of the PCA basis"),
    "w_residual_0.1": ({"w_residual": 0.1}, "half the step size"),
    "w_residual_0.4": ({"w_residual": 0.4}, "twice the step size"),
    "lr_1e-4": ({"lr": 1e-4}, "the authors' learning rate (the example uses 5e-4)"),
    "frames_16": ({"frames": 16}, "16-frame training clips (the release's length; about 2x the time)"),
    "iterations_240": ({"iterations": 240}, "3x the iterations"),
    "no_latent_motion": ({"w_latent_motion": 0.0}, "no latent motion discriminator"),
    "latent_motion_5": ({"w_latent_motion": 5.0}, "a quarter of the latent motion discriminator's weight"),
    "no_identity": ({"w_identity": 0.0}, "no identity loss"),
    "no_identity_seed_1": ({"w_identity": 0.0, "seed": 1}, "no identity loss, the other seed"),
    "no_identity_latent_motion_5": ({"w_identity": 0.0, "w_latent_motion": 5.0},
                                    "the quick start of 2026-12-03: latent motion discriminator 5, no identity loss"),
    "identity_2": ({"w_identity": 2.0}, "0.4x the identity loss's weight"),
    "identity_10": ({"w_identity": 10.0}, "2x the identity loss's weight"),
    "pca_latents": ({"pca_source": "latents"}, "the release's basis: the PCA of sampled content codes"),
    "pca_latents_no_drift": ({"pca_source": "latents", "w_drift": 0.0}, "the release's basis, no shared-drift penalty"),
    "no_drift": ({"w_drift": 0.0}, "no shared-drift penalty"),
    "n_pca_256": ({"n_pca": 256}, "every direction of the projected walks (the example uses 128)"),
    "latent_motion_50": ({"w_latent_motion": 50.0}, "2.5x the latent motion discriminator's weight"),
    "motion_view": ({"video_d_view": "motion"}, "the video discriminator sees frame t - frame 0"),
    "identity_horizon_64": ({"identity_horizon": 64}, "the identity loss also judges frames up to 64 (the shipped model's)"),
}


def train_variant(name: str, overrides: dict, folder: Path, iterations: int | None) -> Path:
    from mocohd_cli.training import train
    from mocohd_cli.workflows.builtin import default_train_config

    motion = folder / "motion.safetensors"
    if motion.is_file():
        return motion
    values = dict(overrides)
    if iterations is not None and "iterations" not in values:
        values["iterations"] = iterations
    config = default_train_config(out=str(folder), num_samples=0, **values)
    train(config, progress=False)
    return motion


def untrained_variant(folder: Path) -> Path:
    """The example's motion model before training (its sizes, its PCA, seed 0), saved like a run's."""
    from mocohd_cli.models.backbone import load_backbone
    from mocohd_cli.workflows.builtin import QUICK_SCHEDULE
    from mocohd_cli.workflows.sampling import untrained_motion

    motion = folder / "motion.safetensors"
    backbone = load_backbone("stylegan2", "example:faces")
    model = untrained_motion(backbone, "cpu", h_dim=QUICK_SCHEDULE["h_dim"], n_pca=QUICK_SCHEDULE["n_pca"],
                             pca_samples=QUICK_SCHEDULE["pca_samples"])
    model.save(motion, backbone="stylegan2", backbone_checkpoint="example:faces", fps=QUICK_SCHEDULE["fps"],
               time_step=QUICK_SCHEDULE["time_step"])  # evaluated at the trained variants' pace
    return motion


def evaluate(motion: Path | None, videos: int, frames: int, metrics: list[str]) -> dict:
    from mocohd_cli.evaluation.run import EvalSettings, run_evaluation

    settings = EvalSettings(metrics=metrics, domain="faces", num_videos=videos, frames=frames, motion=str(motion))
    return run_evaluation(settings).to_json()


def measure(name: str, overrides: dict | None, out: Path, args) -> dict:
    folder = out / name
    result_file = folder / "metrics.json"
    if result_file.is_file():
        return json.loads(result_file.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    motion = untrained_variant(folder) if overrides is None else train_variant(name, overrides, folder, args.iterations)
    train_s = time.perf_counter() - start
    short = evaluate(motion, args.videos, 16, ["motion", "content", "frames"])
    long = evaluate(motion, args.videos, args.long_frames, ["content"])
    m = short["details"]["motion"]
    result = {"ffd": short["motion"], "amplitude": m["amplitude_ratio"], "speed": m["speed_ratio"],
              "mouth": m.get("amplitude_ratio/mouth_open"), "identity_drift": short["content"],
              "identity_drift_long": long["content"], "frames": short["frames"], "train_s": train_s,
              "settings": overrides}
    result_file.write_text(json.dumps(result, indent=1))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder of the runs and their metrics")
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--videos", type=int, default=64, help="generated (and real) videos per metric")
    parser.add_argument("--long-frames", type=int, default=64, help="length of the long videos")
    parser.add_argument("--iterations", type=int, default=None, help="override the example's 80 iterations")
    args = parser.parse_args()
    rows = []
    for name in args.variants:
        overrides, what = VARIANTS[name]
        r = measure(name, overrides, args.out, args)
        mouth = "-" if r["mouth"] is None else f"{r['mouth']:.2f}"  # None: the reader cannot read mouths well enough
        rows.append(f"| {name} | {r['ffd']:.1f} | {r['amplitude']:.2f} | {r['speed']:.2f} | {mouth} | "
                    f"{r['identity_drift']:.2f} | {r['identity_drift_long']:.2f} | {r['frames']:.1f} | {what} |")
        print(rows[-1], flush=True)
    print(f"\n{args.videos} videos per side; ratios are generated / real (real clips take every time_step-th "
          f"frame, as in training); identity drift is relative to the real videos' (16 frames, and "
          f"{args.long_frames} frames)\n")
    print("| variant | ffd | amplitude | speed | mouth amplitude | identity drift | drift, long | frames FD | what |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
