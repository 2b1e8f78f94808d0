"""`mocohd demo` as a library: the handlers behind the page (docs/demo.md), free of gradio.

`DemoSession` holds what the page's calls share: the folder its outputs go to (`DemoOutputs`: one
fresh folder per call, the oldest removed past KEEP_RESULTS), the models loaded so far
(`DemoModels`) and a labels file for class names. `generate` is `mocohd sample` (workflows/sampling.py)
and `animate_image` is `mocohd animate` (workflows/animate.py); each checks every value it is given
(a script calling the /generate endpoint skips the page's sliders) and raises MocohdError for bad
input, which the page shows as a message. The gradio page itself is mocohd_cli/workflows/demo_app.py.

A model is named as `mocohd sample` names one: `example:NAME` (a trained example motion model shipped
with mocohd: faces, robots, sky), a motion file (.safetensors), a training run's folder (its
motion.safetensors, else best.safetensors) or a reference (hf://OWNER/REPO/PATH, ...) to a motion file.
"""
from __future__ import annotations

import math
import shutil
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..data.labels import resolve_classes
from ..infra.errors import MocohdError
from ..infra.hub import is_reference, resolve
from ..infra.runs import RunDir
from ..models.inversion import DEFAULT_STEPS
from ..models.motion import load_motion_and_backbone
from .animate import LATENTS_FILE as ANIMATE_LATENTS, AnimateSettings, animate
from .builtin import EXAMPLE_MOTIONS, example_motion, shipped_example_motions
from .sampling import DEFAULT_FPS, SampleSettings, prepare_sampling, sample_videos

DEMO_EXTRA = "pip install 'mocohd[demo]'"
# The page's choices and the bounds every call is held to: a CPU answers within a minute or so.
LIMITS = {"seed": (0, 2 ** 31 - 1), "num_videos": (1, 16), "frames": (1, 128), "fps": (0, 60),
          "truncation": (0.0, 2.0), "rows": (1, 4), "cols": (1, 4), "steps": (0, 1000)}
DEFAULTS = {"seed": 0, "num_videos": 4, "frames": 16, "fps": 0, "truncation": 1.0, "rows": 2, "cols": 3}
MODES = ("independent", "same content", "same motion", "decomposition")
# Result folders kept on disk (and so downloadable) at once; older ones are removed.
KEEP_RESULTS = 32
# Models held in memory at once (a model and a truncation).
KEEP_MODELS = 2
LATENTS_FILE = "latents.npz"

Progress = Callable[[float, str], None]  # (fraction done in [0, 1], what is being done)


def require_gradio():
    """The gradio module, or one MocohdError naming the extra that brings it."""
    try:
        import gradio
    except ImportError as exc:
        raise MocohdError(f"`mocohd demo` needs gradio, which is not installed ({exc})",
                          fix=f"install the demo extra: {DEMO_EXTRA}") from exc
    return gradio


def example_models() -> list[str]:
    """The model choices shipped in this installation: example:faces, example:robots, example:sky."""
    return [f"example:{name}" for name in shipped_example_motions()]


def resolve_model(text: object) -> Path:
    """The motion file a model choice names (see the module's docstring); MocohdError otherwise."""
    if not isinstance(text, str) or not text.strip():
        raise MocohdError("no model given", fix="pick an example, or give a motion file, a run folder or an hf:// "
                                                "reference")
    text = text.strip()
    scheme, _, name = text.partition(":")
    if scheme == "example" and name in EXAMPLE_MOTIONS:
        return example_motion(name)  # the trained example motion model (example:NAME elsewhere is a backbone)
    path = Path(resolve(text)) if is_reference(text) else Path(text).expanduser()
    if path.is_dir():
        run = RunDir(path)
        for candidate in (run.motion, run.best):
            if candidate.is_file():
                return candidate
        raise MocohdError("the folder holds no motion model (motion.safetensors or best.safetensors)", path=path,
                          fix="give a finished training run's folder, or the motion file itself")
    if not path.is_file():
        raise MocohdError("no such motion model", path=path,
                          fix="give a motion file (.safetensors), a run folder, an hf:// reference or an example")
    return path


def bounded(name: str, value: object, *, integer: bool = True) -> int | float:
    """`value` as a number within LIMITS[name]; MocohdError naming the control otherwise."""
    low, high = LIMITS[name]
    label = name.replace("_", " ")
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise MocohdError(f"{label} must be a number, got {str(value)[:40]!r}",
                          fix=f"use a value in {low}..{high}") from None
    if not math.isfinite(number) or not low <= number <= high or (integer and number != int(number)):
        kind = "a whole number" if integer else "a number"
        raise MocohdError(f"{label} must be {kind} in {low}..{high}, got {str(value)[:40]}",
                          fix=f"use a value in {low}..{high}")
    return int(number) if integer else number


def parse_classes(text: object) -> list[str] | None:
    """'3, 7' -> ['3', '7'] (class indices, or names with the session's labels file); '' -> None."""
    if text is None:
        return None
    if not isinstance(text, str) or len(text) > 1000:
        raise MocohdError("class: give class indices (or names) separated by commas", fix="e.g. 207 or 207, 980")
    values = [part.strip() for part in text.replace(";", ",").split(",") if part.strip()]
    return values or None


class DemoOutputs:
    """The folder the page's results go to: a fresh folder per call; past KEEP_RESULTS, the oldest go."""

    def __init__(self, root: str | Path, keep: int = KEEP_RESULTS):
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.keep = keep
        self._made: list[Path] = []
        self._lock = threading.Lock()

    def new(self, kind: str) -> Path:
        with self._lock:
            folder = self.root / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
            folder.mkdir()
            self._made.append(folder)
            while len(self._made) > self.keep:
                shutil.rmtree(self._made.pop(0), ignore_errors=True)
            return folder

    def owns(self, path: str | Path) -> bool:
        """True for a file inside one of this session's result folders."""
        try:
            Path(path).resolve().relative_to(self.root)
        except ValueError:
            return False
        return True


class DemoModels:
    """Motion models with their backbones, loaded once per (file, truncation) and kept (KEEP_MODELS)."""

    def __init__(self, keep: int = KEEP_MODELS):
        self.keep = keep
        self._loaded: OrderedDict[tuple, tuple] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, motion: Path, truncation: float):
        stat = motion.stat()
        key = (str(motion.resolve()), stat.st_mtime_ns, stat.st_size, float(truncation))
        with self._lock:
            if key in self._loaded:
                self._loaded.move_to_end(key)
                return self._loaded[key]
            loaded = load_motion_and_backbone(motion, device="cpu", truncation=truncation)
            self._loaded[key] = loaded
            while len(self._loaded) > self.keep:
                self._loaded.popitem(last=False)
            return loaded


@dataclass
class DemoSession:
    outputs: DemoOutputs
    models: DemoModels
    labels: str | None = None  # class-name file for names in the class box


@dataclass
class Generated:
    video: Path  # one grid video of all the videos
    latents: Path  # their latents (replay: mocohd sample --latents)
    message: str


@dataclass
class Animated:
    video: Path
    compare: Path  # the upload and the inverted frame side by side
    latents: Path
    message: str


def _classes(session: DemoSession, text: object, backbone) -> list[int] | None:
    names = parse_classes(text)
    if names and not backbone.condition_dim:
        raise MocohdError(f"backbone {backbone.name!r} is unconditional: it takes no class",
                          fix="leave the class box empty")
    return resolve_classes(names, session.labels, num_classes=backbone.condition_dim or None)


def _fps(fps: float, info: dict) -> float:
    return float(fps) if fps else float(info.get("fps") or DEFAULT_FPS)


def generate(session: DemoSession, model: str = "example:faces", seed: object = DEFAULTS["seed"],
             num_videos: object = DEFAULTS["num_videos"], frames: object = DEFAULTS["frames"],
             fps: object = DEFAULTS["fps"], truncation: object = DEFAULTS["truncation"], classes: object = "",
             mode: str = MODES[0], rows: object = DEFAULTS["rows"], cols: object = DEFAULTS["cols"], *,
             progress: Progress | None = None) -> Generated:
    """`mocohd sample` for the page: one grid video (rows share a content and columns a motion in the
    decomposition) and its latents file. fps 0: the model's frame rate."""
    if mode not in MODES:
        raise MocohdError(f"unknown mode {str(mode)[:40]!r}", fix=f"use one of: {', '.join(MODES)}")
    seed, frames = bounded("seed", seed), bounded("frames", frames)
    fps, truncation = bounded("fps", fps, integer=False), bounded("truncation", truncation, integer=False)
    decomposition = (bounded("rows", rows), bounded("cols", cols)) if mode == "decomposition" else None
    count = None if decomposition else bounded("num_videos", num_videos)
    motion_file = resolve_model(model)
    tell = progress or (lambda fraction, what: None)
    tell(0.0, "loading the model")
    started = time.perf_counter()
    backbone, motion, info = session.models.get(motion_file, truncation)
    folder = session.outputs.new("videos")
    settings = SampleSettings(motion=str(motion_file), num_videos=count, frames=frames, seed=seed,
                              truncation=truncation, grid=True, same_content=mode == "same content",
                              same_motion=mode == "same motion", decomposition=decomposition,
                              save_latents=str(folder / LATENTS_FILE), out=str(folder), device="cpu", batch_size=4)
    settings.validate()
    settings.classes = _classes(session, classes, backbone)
    fps = _fps(fps, info)
    result = sample_videos(settings, backbone, motion, fps=fps,
                           progress=lambda done, total: tell(done / total, f"videos {done}/{total}"))
    what = (f"a {decomposition[0]} x {decomposition[1]} decomposition (rows share a content, columns a motion)"
            if decomposition else f"{result.num_videos} video(s)" + (f", {mode}" if mode != MODES[0] else ""))
    message = (f"{what}: {result.frames} frames at {fps:g} fps, {result.width} x {result.height} px each, seed {seed}, "
               f"{motion_file.name} ({time.perf_counter() - started:.1f} s)")
    return Generated(result.files[0], result.latents, message)


def animate_image(session: DemoSession, image: object, model: str = "example:faces", seed: object = 0,
                  frames: object = DEFAULTS["frames"], fps: object = DEFAULTS["fps"], steps: object = None,
                  classes: object = "", *, progress: Progress | None = None) -> Animated:
    """`mocohd animate` of one uploaded image: its video, the comparison image and the latents file."""
    if image is None or (isinstance(image, str) and not image.strip()):
        raise MocohdError("no image uploaded", fix="upload an image (PNG, JPEG, ...) first")
    image = Path(str(image))
    seed, frames = bounded("seed", seed), bounded("frames", frames)
    fps = bounded("fps", fps, integer=False)
    steps = bounded("steps", DEFAULT_STEPS if steps is None else steps)
    motion_file = resolve_model(model)
    tell = progress or (lambda fraction, what: None)
    tell(0.0, "loading the model")
    started = time.perf_counter()
    backbone, motion, info = session.models.get(motion_file, 1.0)
    folder = session.outputs.new("animate")
    settings = AnimateSettings(motion=str(motion_file), steps=steps, frames=frames, seed=seed, out=str(folder),
                               save_latents=True, device="cpu")
    result = animate(settings, [image], backbone=backbone, motion=motion, fps=_fps(fps, info),
                     classes=_classes(session, classes, backbone),
                     progress=lambda done, total, what: tell(done / max(total, 1), what))
    item = result.animations[0]
    notes = f" ({'; '.join(item.notes)})" if item.notes else ""
    message = (f"inverted to PSNR {item.psnr:.2f} dB (start {item.start_psnr:.2f} dB) in {steps} steps{notes}, "
               f"{frames} frames, seed {seed}, {motion_file.name} ({time.perf_counter() - started:.1f} s)")
    return Animated(item.video, item.compare, result.latents or folder / ANIMATE_LATENTS, message)
