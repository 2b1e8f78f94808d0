"""`mocohd train`: train a motion model on a folder of videos (in-domain)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..app import app
from ..infra.console import console
from ..infra.errors import MocohdError


def require_inputs(values: dict) -> dict:
    """The image generator and the videos to train on. With neither: the built-in example of the
    run's mode (mocohd_cli.workflows.builtin), with any options given on top of its short schedule."""
    cross = values.get("mode") == "cross-domain"
    image_opt, video_opt = ("--image-domain", "--motion-domain") if cross else ("--checkpoint", "--data")
    if not values.get("checkpoint") and not values.get("data"):
        from ..workflows.builtin import default_train_values, default_transfer_values

        if cross:
            console.print(f"no {image_opt}/{video_opt}: running the built-in cross-domain example (the 'robots' "
                          "example backbone animated with the motion of rendered cartoon-face videos)")
            return {**default_transfer_values(), **values}
        console.print(f"no {image_opt}/{video_opt}: training the built-in example (the 'faces' example backbone "
                      "on rendered cartoon-face videos; see `mocohd data list`)")
        return {**default_train_values(), **values}
    missing = [opt for opt, name in ((image_opt, "checkpoint"), (video_opt, "data")) if not values.get(name)]
    if missing:
        raise MocohdError(f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} needed",
                          fix=f"pass {image_opt} PATH (the image generator) and {video_opt} DIR (videos to learn "
                              "motion from), or neither for the built-in example")
    return values


def resolve_values(options: dict, config_file: Path | None, resume: bool) -> dict:
    """Defaults < the resumed run's saved config < --config FILE < options given on the command line."""
    from ..infra.runs import DEFAULT_RUNS_ROOT, read_toml
    from ..training.trainer import find_resumable_run, resume_values

    values: dict = {}
    if resume:
        run = options.get("out") or find_resumable_run(options.get("runs_root") or DEFAULT_RUNS_ROOT)
        if run is not None and (Path(run) / "config.toml").exists():
            values.update(resume_values(run))
    if config_file is not None:
        values.update(read_toml(config_file))
    values.update({k: v for k, v in options.items() if v is not None})
    values["resume"] = resume
    return values


@app.command("train")
def train_command(
    backbone: Optional[str] = typer.Option(None, help="Backbone: registered name, module:Class or file.py:Class "
                                           "(inferred from the checkpoint when absent)."),
    checkpoint: Optional[Path] = typer.Option(None, help="Image-generator checkpoint (frozen during training)."),
    data: Optional[Path] = typer.Option(None, help="Videos: a folder (or .zip) of frame folders or video files."),
    out: Optional[Path] = typer.Option(None, help="Run folder (default ./mocohd-runs/train-<time>)."),
    config: Optional[Path] = typer.Option(None, "--config", help="TOML file of options (the options here override it)."),
    resume: bool = typer.Option(False, help="Continue the run in --out (default: the latest run) from its state."),
    frames: Optional[int] = typer.Option(None, help="Frames per training clip (default 16)."),
    time_step: Optional[int] = typer.Option(None, help="Take every N-th frame of the source videos (default 2)."),
    video_frame_size: Optional[int] = typer.Option(None, help="Side of the frames the discriminators see (default 128, or the backbone's resolution if smaller)."),
    batch_size: Optional[int] = typer.Option(None, help="Clips per batch and process (default 16)."),
    lr: Optional[float] = typer.Option(None, help="Adam learning rate, all models (default 1e-4)."),
    w_residual: Optional[float] = typer.Option(None, help="Step size of the latent residual lambda (default 0.2)."),
    n_pca: Optional[int] = typer.Option(None, help="PCA components the motion moves along (default 384, or the latent size if smaller)."),
    h_dim: Optional[int] = typer.Option(None, help="LSTM hidden size (default 384)."),
    g_steps: Optional[int] = typer.Option(None, help="Motion-generator steps per discriminator step (default 5)."),
    iterations: Optional[int] = typer.Option(None, help="Training iterations (real batches)."),
    epochs: Optional[float] = typer.Option(None, help="Passes over the dataset when --iterations is absent (default 100)."),
    seed: Optional[int] = typer.Option(None, help="Random seed (default 0)."),
    truncation: Optional[float] = typer.Option(None, help="Truncation of the content codes (default 1.0)."),
    pca_samples: Optional[int] = typer.Option(None, help="Latents sampled for the motion-space PCA (default 100000)."),
    d_channels: Optional[int] = typer.Option(None, help="Width of the discriminators' first layer (default 64)."),
    d_scales: Optional[int] = typer.Option(None, help="Scales of the multi-scale discriminators (default 2)."),
    device: Optional[str] = typer.Option(None, help="auto, cpu or cuda (default auto)."),
    precision: Optional[str] = typer.Option(None, help="fp32, bf16 or fp16 (default fp32)."),
    workers: Optional[int] = typer.Option(None, help="DataLoader worker processes (default 4)."),
    log_every: Optional[int] = typer.Option(None, help="Log losses every N iterations (default 10)."),
    sample_every: Optional[int] = typer.Option(None, help="Sample videos and export the motion model every N "
                                               "iterations (default 500)."),
    checkpoint_every: Optional[int] = typer.Option(None, help="Write the training state every N iterations (default 100)."),
    num_samples: Optional[int] = typer.Option(None, help="Videos in each sample grid (default 4)."),
    sample_format: Optional[str] = typer.Option(None, help="mp4, gif or png (default mp4)."),
    fps: Optional[float] = typer.Option(None, help="Frames per second of samples and of the exported model (default 8)."),
    runs_root: Optional[Path] = typer.Option(None, help="Where new run folders go (default ./mocohd-runs)."),
    class_: Optional[list[str]] = typer.Option(None, "--class", help="Conditional backbones: a class (index, or "
                                               "name with --labels) the videos cycle over; repeat for several."),
    labels: Optional[Path] = typer.Option(None, help="Class-name file (one name per line, or JSON) for --class names."),
) -> None:
    """Train a motion generator on videos, against a frozen image generator (in-domain)."""
    run_training(locals(), mode="in-domain")


def run_training(arguments: dict, *, mode: str) -> None:
    """What `train` and `transfer` share: resolve the options, train, report."""
    from ..data.labels import resolve_classes
    from ..training.trainer import TrainConfig, train

    config, resume = arguments.pop("config"), arguments.pop("resume")
    labels = arguments.pop("labels")
    arguments["classes"] = resolve_classes(arguments.pop("class_"), labels)
    options = {k: (str(v) if isinstance(v, Path) else v) for k, v in arguments.items()}
    values = resolve_values(options, config, resume)
    values["mode"] = mode
    values = require_inputs(values)
    result = train(TrainConfig.from_dict(values, source=config))
    losses = " ".join(f"{k}={v:.3f}" for k, v in result.losses.items())
    console.print(f"trained {result.steps} iterations; motion model: {result.motion_path}")
    if losses:
        console.print(f"final losses: {losses}")
    console.print(f"sample it with: mocohd sample --motion {result.motion_path}")
