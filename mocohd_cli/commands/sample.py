"""`mocohd sample`: videos from a backbone and a (trained or untrained) motion model."""
from __future__ import annotations

from pathlib import Path


from ..app import app
from ..infra.console import console, progress
from ..infra.errors import MocohdError
from ..workflows.sampling import SampleSettings
from .options import config_command, given_values, labels_option, options_from


def _latest_motion() -> Path:
    from ..infra.runs import latest_run

    run = latest_run()
    if run is None:
        raise MocohdError("no --motion given and no finished training run found under ./mocohd-runs",
                          fix="run `mocohd train` first, or pass --backbone/--checkpoint/--motion")
    return run / "motion.safetensors"


@config_command(app, "sample", options_from(SampleSettings) + [labels_option()], help="Sample videos.")
def sample_command(values: dict) -> None:
    from ..data.labels import resolve_classes
    from ..data.video import write_videos
    from ..models.generation import generate_videos
    from ..workflows.sampling import prepare_sampling

    labels, names = values.pop("labels"), values.pop("classes")
    settings = SampleSettings(**given_values(values))
    if settings.motion is None and settings.checkpoint is None:
        settings.motion = str(_latest_motion())
        console.print(f"using the latest run's motion model: {settings.motion}")
    with progress() as bar:
        task = bar.add_task("motion-space PCA", total=None, visible=settings.motion is None)
        backbone, motion, info = prepare_sampling(
            settings, progress=lambda done, total: bar.update(task, completed=done, total=total))
    if not info:
        console.print("[yellow]note: no --motion given: using a freshly initialised, UNTRAINED motion model "
                      "(random motion). Train one with `mocohd train`.[/yellow]")
    settings.classes = resolve_classes(names, labels, num_classes=backbone.condition_dim or None)
    with progress() as bar:
        task = bar.add_task("sampling", total=settings.num_videos)
        videos = generate_videos(backbone, motion, num_videos=settings.num_videos, n_frames=settings.frames,
                                 seed=settings.seed, noise=settings.noise, interpolate=settings.interpolate,
                                 classes=settings.classes, batch_size=settings.batch_size,
                                 progress=lambda done, _total: bar.update(task, completed=done))
    fps = settings.fps or float(info.get("fps", 8))
    written = write_videos(videos, settings.out, fps=fps, fmt=settings.format, grid=settings.grid)
    t, h, w = videos.shape[1], videos.shape[3], videos.shape[4]
    console.print(f"wrote {len(written)} file(s) to {settings.out} ({settings.num_videos} video(s), {t} frames, "
                  f"{w}x{h})")
