"""`mocohd sample`: videos from a backbone and a (trained or untrained) motion model."""
from __future__ import annotations

from pathlib import Path

from ..app import PANEL_GENERATE, app
from ..data.labels import resolve_classes
from ..infra.console import console, progress
from ..infra.distributed import init_distributed, rank_failures, shutdown
from ..infra.errors import MocohdError
from ..infra.runs import latest_run
from ..infra.threads import threads_option
from ..workflows.builtin import example_motion, shipped_example_motions
from ..workflows.sampling import DEFAULT_FPS, SampleSettings, open_latents, prepare_sampling, sample_videos
from .options import config_command, given_values, labels_option, options_from


def _default_motion(replay: bool) -> Path:
    """No --motion, --checkpoint or --backbone: the latest run's motion model, else (unless a --latents
    file is replayed: it must not silently land on another backbone) the faces example."""
    run = latest_run()
    if run is not None:
        console.print(f"using the latest run's motion model: {run / 'motion.safetensors'}")
        return run / "motion.safetensors"
    if replay or "faces" not in shipped_example_motions():
        raise MocohdError("no --motion given, no finished training run under ./mocohd-runs and no example motion "
                          "model in this installation", fix="run `mocohd train` first, or pass --motion")
    console.print("no training run under ./mocohd-runs: sampling the trained faces example (--example faces)")
    return example_motion("faces")


@config_command(app, "sample", options_from(SampleSettings) + [labels_option(), threads_option()],
                help="Sample videos from a motion model and its image generator.\n\n"
                     "Examples:\n\n"
                     "  mocohd sample --example faces -n 8\n\n"
                     "  mocohd sample --motion mocohd-runs/train-20260101-120000/motion.safetensors --grid",
                panel=PANEL_GENERATE)
def sample_command(values: dict) -> None:
    """Alone, or under torchrun with the videos dealt over the ranks (docs/scaling.md)."""
    context = init_distributed(values.get("device") or "auto")
    console.quiet = console.quiet or not context.is_main  # rank 0 speaks for the job; errors still show
    try:
        with rank_failures(context):
            _sample(values, context)
    finally:
        shutdown(context)


def _sample(values: dict, context) -> None:
    labels, names = values.pop("labels"), values.pop("classes")
    settings = SampleSettings(**given_values(values), classes=names or None)
    settings.validate()  # before anything is loaded; the --latents file may fill in more
    latents = open_latents(settings)
    if settings.example is not None:
        # the example becomes the motion model (validated already: it clashes with nothing given)
        settings.motion, settings.example = str(example_motion(settings.example)), None
    elif settings.motion is None and settings.checkpoint is None and settings.backbone is None:
        settings.motion = str(_default_motion(replay=latents is not None))
    untrained = settings.motion is None and latents is None
    if untrained and not context.is_main:
        context.barrier()  # rank 0 computes (and caches) the motion-space PCA first, the others read it
    with progress() as bar:
        task = bar.add_task("motion-space PCA", total=None, visible=untrained)
        backbone, motion, info = prepare_sampling(
            settings, progress=lambda done, total: bar.update(task, completed=done, total=total))
    if untrained and context.is_main:
        context.barrier()
    if motion is not None and not info:
        console.print("[yellow]note: no --motion given: using a freshly initialised, UNTRAINED motion model "
                      "(random motion). Train one with `mocohd train`.[/yellow]")
    if latents is not None and "truncation" in settings.given and not backbone.truncation_in_synthesis:
        console.print(f"[yellow]note: --truncation changes nothing in a replay with backbone {backbone.name!r} (the "
                      "file's trajectories are fixed); --save-latents records the file's truncation[/yellow]")
    settings.classes = resolve_classes(names, labels, num_classes=backbone.condition_dim or None)
    fps = settings.fps if settings.fps is not None else float(info.get("fps", DEFAULT_FPS))
    with progress() as bar:
        task = bar.add_task("sampling", total=settings.num_videos)
        result = sample_videos(settings, backbone, motion, fps=fps, latents=latents, context=context,
                               progress=lambda done, total: bar.update(task, completed=done, total=total))
    if not context.is_main:
        return
    console.print(f"wrote {len(result.files)} file(s) to {settings.out} ({result.num_videos} video(s), "
                  f"{result.frames} frames, {result.width}x{result.height})")
    if result.latents is not None:
        console.print(f"wrote the latents to {result.latents}")
