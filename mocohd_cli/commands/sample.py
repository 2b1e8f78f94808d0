"""`mocohd sample`: videos from a backbone and a (trained or fresh) motion model."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..app import app
from ..infra.console import console, progress
from ..infra.device import resolve_device
from ..infra.errors import MocohdError
from ..workflows.sampling import generate_videos
from ..data.video import FORMATS, write_videos


def _latest_motion() -> Path:
    from ..infra.runs import latest_run

    run = latest_run()
    if run is None:
        raise MocohdError("no --motion given and no finished training run found under ./mocohd-runs",
                          fix="run `mocohd train` first, or pass --backbone/--checkpoint/--motion")
    return run / "motion.safetensors"


@app.command("sample")
def sample(
    backbone: Optional[str] = typer.Option(None, help="Backbone: registered name, module:Class or file.py:Class "
                                           "(inferred from the checkpoint or motion model when absent)."),
    checkpoint: Optional[Path] = typer.Option(None, help="Image-generator checkpoint."),
    motion: Optional[Path] = typer.Option(None, help="Motion model (.safetensors). Without it and without "
                                          "--checkpoint: the latest run under ./mocohd-runs."),
    num_videos: int = typer.Option(4, "--num-videos", "-n", min=1, help="How many videos."),
    frames: int = typer.Option(16, min=1, help="Frames per video (the LSTM unrolls past its training length)."),
    fps: Optional[float] = typer.Option(None, help="Frames per second (default: the motion model's, else 8)."),
    seed: int = typer.Option(0, help="Random seed: the same seed gives the same videos."),
    truncation: float = typer.Option(1.0, help="Truncation of the content code towards the mean latent."),
    noise: str = typer.Option("random", help="Per-layer noise: random (one draw per video), const or none."),
    interpolate: bool = typer.Option(False, help="Insert midpoints between consecutive latents (2T-1 frames)."),
    grid: bool = typer.Option(False, help="Write one grid video instead of one file per video."),
    fmt: str = typer.Option("mp4", "--format", help=f"Output format: {', '.join(FORMATS)}."),
    class_: Optional[list[str]] = typer.Option(None, "--class", help="Conditional backbones: class per video (index, "
                                               "or name with --labels); repeat, the videos cycle over them."),
    labels: Optional[Path] = typer.Option(None, help="Class-name file (one name per line, or JSON) for --class names."),
    out: Path = typer.Option(Path("samples"), help="Output folder."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    batch_size: int = typer.Option(8, min=1, help="Videos per forward pass."),
) -> None:
    """Sample videos."""
    from ..models.backbone import load_backbone
    from ..data.labels import resolve_classes
    from ..models.motion import load_motion

    if fmt not in FORMATS:
        raise MocohdError(f"unknown --format {fmt!r}", fix=f"use one of {', '.join(FORMATS)}")
    if motion is None and checkpoint is None:
        motion = _latest_motion()
        console.print(f"using the latest run's motion model: {motion}")
    info = {}
    if motion is not None:
        from ..models.motion import read_motion_info

        info = read_motion_info(motion)
        if checkpoint is None:
            checkpoint = info.get("backbone_checkpoint")
            if not checkpoint:
                raise MocohdError("the motion model does not record its backbone checkpoint", path=motion,
                                  fix="pass --checkpoint (and --backbone)")
            backbone = backbone or info.get("backbone")
    torch_device = resolve_device(device)
    image_generator = load_backbone(backbone, checkpoint, device=torch_device,
                                    truncation=truncation)
    classes = resolve_classes(class_, labels, num_classes=image_generator.condition_dim or None)
    if motion is not None:
        motion_model = load_motion(motion, image_generator, device=torch_device)
    else:
        motion_model = _fresh_motion(image_generator, torch_device)
        console.print("[yellow]note: no --motion given: using a freshly initialised, UNTRAINED motion model "
                      "(random motion). Train one with `mocohd train`.[/yellow]")
    with progress() as bar:
        task = bar.add_task("sampling", total=num_videos)
        videos = generate_videos(image_generator, motion_model.eval(), num_videos=num_videos, n_frames=frames,
                                 seed=seed, noise=noise, interpolate=interpolate,
                                 classes=classes, batch_size=batch_size,
                                 progress=lambda done, _total: bar.update(task, completed=done))
    written = write_videos(videos, out, fps=fps or float(info.get("fps", 8)), fmt=fmt, grid=grid)
    t, h, w = videos.shape[1], videos.shape[3], videos.shape[4]
    console.print(f"wrote {len(written)} file(s) to {out} ({num_videos} video(s), {t} frames, {w}x{h})")


def _fresh_motion(image_generator, device):
    """An untrained motion model with the backbone's real PCA statistics and the default sizes."""
    import torch

    from ..models.motion import MotionGenerator
    from ..models.pca import motion_pca

    n_pca = min(384, image_generator.latent_dim)
    n_samples = 20_000
    with progress() as bar:
        task = bar.add_task("motion-space PCA", total=n_samples)
        components, stdev = motion_pca(image_generator, n_pca=n_pca, n_samples=n_samples,
                                       progress=lambda done, _total: bar.update(task, completed=done))
    torch.manual_seed(0)  # the fresh model's weights are part of "same seed, same bytes"
    return MotionGenerator(image_generator.latent_dim, h_dim=384, n_pca=n_pca,
                           pca_components=components, pca_stdev=stdev).to(device)
