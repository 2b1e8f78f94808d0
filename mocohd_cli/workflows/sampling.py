"""`mocohd sample` as a library: `SampleSettings` is every knob of the command (which is built
from its fields); `prepare_sampling` turns them into a backbone and a motion model, and
`sample_videos` streams the videos to files, batch by batch (docs/sampling.md).

Which videos: `planned_videos` (one content and one motion stream each: shared contents or
motions, decomposition grids, content moving from one seed's to another's), or a latents file
written by `--save-latents` (`LatentsFile`), replayed exactly."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
import itertools
import math
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from ..data.video import FORMATS, GridCanvas, check_fps, check_out_dir, output_file, save_video, write_videos
from ..infra.device import DEVICES, resolve_device
from ..infra.distributed import dealt_order, gather_batches, gather_plain, is_mine, share_of
from ..infra.errors import MocohdError
from ..infra.files import atomic_path, check_writable_file
from ..infra.settings import require_positive, setting, show_value
from ..models.backbone import BACKBONE_HELP, NOISE_MODES, ImageGenerator, check_truncation, load_backbone
from ..models.generation import LatentBatch, VideoSpec, default_specs, draw_latents, render
from ..models.motion import DEFAULT_H_DIM, MotionGenerator, default_n_pca, load_motion_and_backbone
from ..models.pca import motion_pca

# PCA samples of the untrained motion model `mocohd sample` uses without --motion (a preview,
# so fewer than training's; cached like training's).
PREVIEW_PCA_SAMPLES = 20_000
# Defaults of the options whose being given matters (None in SampleSettings: not given): a --latents
# file sets some of them instead, and others do not apply to a replay.
DEFAULTS = {"num_videos": 4, "frames": 16, "seed": 0, "truncation": 1.0, "noise": "random", "interpolate": False}
DEFAULT_FPS = 8.0
# Frames held in memory at once, float32: a batch of videos (the batch shrinks to fit), or the
# one grid of --grid / --decomposition. Beyond it the videos stream, or the grid is refused.
MAX_HELD_BYTES = 2 * 1024 ** 3
# A latents file (--save-latents, --latents) is held in memory whole.
MAX_LATENTS_BYTES = 1024 ** 3


def _default_text(name: str) -> str:
    return show_value(DEFAULTS[name])


@dataclass
class SampleSettings:
    """Every knob of `mocohd sample`."""

    backbone: str | None = setting(None, BACKBONE_HELP, default_text="inferred from the checkpoint or motion model",
                                   metavar="NAME", group="Model")
    checkpoint: str | None = setting(None, "Image-generator checkpoint.",
                                     default_text="the one the motion model records", metavar="PATH", group="Model")
    motion: str | None = setting(None, "Motion model (.safetensors, example:NAME or hf://). Not given: an untrained "
                                 "one with --checkpoint or --backbone; else the latest run under ./mocohd-runs, "
                                 "else the faces example.", metavar="PATH", group="Model")
    example: str | None = setting(None, "Sample a trained example shipped with mocohd, nothing to train: faces "
                                  "(talking cartoon faces), robots (robot heads moving like the faces: cross-domain) "
                                  "or sky (a time-lapse sky).", metavar="NAME", group="Model")
    num_videos: int | None = setting(None, "How many videos (any number: they are written batch by batch).",
                                     flag=("--num-videos", "-n"), default_text=_default_text("num_videos"),
                                     group="Videos")
    frames: int | None = setting(None, "Frames per video (the LSTM unrolls past its training length).",
                                 default_text=_default_text("frames"), group="Videos")
    fps: float | None = setting(None, "Frames per second.",
                                default_text=f"the --latents file's, else the motion model's, else {DEFAULT_FPS:g}",
                                group="Videos")
    seed: int | None = setting(None, "Random seed: the same seed gives the same videos (not with --latents).",
                               default_text=_default_text("seed"), group="Videos")
    truncation: float | None = setting(None, "Truncation of the content codes.",
                                       default_text=_default_text("truncation"), group="Model")
    noise: str | None = setting(None, "Per-layer noise (random: one draw per video).",
                                default_text=_default_text("noise"), choices=NOISE_MODES, group="Videos")
    interpolate: bool | None = setting(None, "Insert midpoints between consecutive latents (2T-1 frames).",
                                       default_text=_default_text("interpolate"), group="Videos")
    grid: bool = setting(False, "Write one grid video instead of one file per video.", group="Controls")
    same_content: bool = setting(False, "One content code, N motions.", group="Controls")
    same_motion: bool = setting(False, "One motion (the same motion noise), N contents.", group="Controls")
    decomposition: tuple[int, int] | None = setting(
        None, "R C: one grid video of R x C videos; each row shares a content, each column a motion.", group="Controls")
    lerp: tuple[int, int] | None = setting(
        None, "A B: the content code moves from seed A's (its first video's) to seed B's over each video, "
        "while the motion (from --seed) runs.", group="Controls")
    save_latents: str | None = setting(None, "Also write the videos' content codes, motion noise and latent "
                                       "trajectories (and classes) to this .npz file.", metavar="FILE",
                                       group="Controls")
    latents: str | None = setting(None, "Replay the videos of a --save-latents .npz file exactly.", metavar="FILE",
                                  group="Controls")
    format: str = setting("mp4", "Output format.", choices=FORMATS, group="Output")
    classes: list[int] | None = setting(None, "Conditional backbones: class per content (index, or name with "
                                        "--labels); repeat, the contents cycle over them.", flag="--class",
                                        cli_type=list[str], default_text="random", group="Model")
    out: str = setting("samples", "Output folder.", metavar="DIR", group="Output")
    device: str = setting("auto", "Where to compute.", choices=DEVICES, group="Machine")
    batch_size: int = setting(8, "Videos per forward pass (fewer when a batch's frames would not fit in memory).",
                              group="Machine")
    given: set[str] = field(default_factory=set, metadata={"cli": False})

    def __post_init__(self) -> None:
        # What the person gave (a latents file fills in the rest); then the remaining defaults.
        self.given = self.given or {name for name in (*DEFAULTS, "fps") if getattr(self, name) is not None}
        for name, value in DEFAULTS.items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        for name in ("decomposition", "lerp"):  # a TOML file gives lists
            if getattr(self, name) is not None:
                setattr(self, name, tuple(getattr(self, name)))

    def validate(self) -> None:
        require_positive(self, ("num_videos", "frames", "batch_size"))
        if self.format not in FORMATS:
            raise MocohdError(f"unknown --format {self.format!r}", fix=f"use one of {', '.join(FORMATS)}")
        if self.fps is not None:
            check_fps(self.fps, self.format)
        check_truncation(self.truncation)
        if self.noise not in NOISE_MODES:
            raise MocohdError(f"unknown --noise {self.noise!r}", fix=f"use one of {', '.join(NOISE_MODES)}")
        if self.example is not None:
            clashing = [f"--{name}" for name in ("motion", "checkpoint", "backbone") if getattr(self, name) is not None]
            if clashing:
                raise MocohdError(f"--example brings its own motion model and backbone: {', '.join(clashing)} does "
                                  "not apply", fix=f"drop {', '.join(clashing)}, or drop --example")
        controls = [name for name in ("same_content", "same_motion", "decomposition", "lerp") if getattr(self, name)]
        if len(controls) > 1:
            raise MocohdError(f"--{controls[0].replace('_', '-')} and --{controls[1].replace('_', '-')} cannot be "
                              "combined", fix="pick one way of sharing contents and motions")
        if self.decomposition is not None:
            if len(self.decomposition) != 2 or min(self.decomposition) < 1:
                raise MocohdError(f"--decomposition takes two counts >= 1 (rows, columns), got {self.decomposition}",
                                  fix="e.g. --decomposition 3 4")
            if "num_videos" in self.given:
                raise MocohdError("--decomposition R C makes R*C videos: --num-videos does not apply",
                                  fix="drop --num-videos")
        if self.lerp is not None and len(self.lerp) != 2:
            raise MocohdError(f"--lerp takes two seeds, got {self.lerp}", fix="e.g. --lerp 3 7")
        if self.latents is not None:
            fixed = [f"--{name.replace('_', '-')}" for name in ("num_videos", "frames", "seed") if name in self.given]
            fixed += [f"--{name.replace('_', '-')}" for name in ("same_content", "same_motion", "lerp")
                      if getattr(self, name)]
            fixed += ["--class"] if self.classes else []
            if fixed:
                raise MocohdError(f"--latents replays the videos of its file: {', '.join(fixed)} does not apply",
                                  path=self.latents, fix=f"drop {', '.join(fixed)}")

    @property
    def grid_columns(self) -> int | None:
        return self.decomposition[1] if self.decomposition else None


def planned_videos(settings: SampleSettings) -> tuple[int, Iterator[VideoSpec]]:
    """How many videos the settings ask for, and where each one's content and motion come from
    (models/generation.py VideoSpec): streams of --seed, shared as the controls say."""
    seed, n = settings.seed, settings.num_videos
    if settings.decomposition is not None:
        rows, cols = settings.decomposition
        return rows * cols, (VideoSpec((seed, r), (seed, c)) for r in range(rows) for c in range(cols))
    if settings.lerp is not None:
        a, b = settings.lerp
        return n, (VideoSpec((a, 0), (seed, i), content_to=(b, 0)) for i in range(n))
    if settings.same_content:
        return n, (VideoSpec((seed, 0), (seed, i)) for i in range(n))
    if settings.same_motion:
        return n, (VideoSpec((seed, i), (seed, 0)) for i in range(n))
    return n, default_specs(seed, n)


# -- latents files --------------------------------------------------------------------------------
# key: (dtype, what it holds). N videos, T frames, D latent dimensions.
LATENT_KEYS = {
    "content": (np.float32, "[N, D] content codes w_0"),
    "motion_noise": (np.float32, "[N, T-1, D] motion noise"),
    "trajectories": (np.float32, "[N, T, D] latent trajectories"),
    "synthesis_seeds": (np.int64, "[N] seeds of the backbone's noise"),
    "classes": (np.int64, "[N] class indices (conditional backbones only)"),
    "truncation": (np.float64, "[] --truncation"),
    "noise": (np.str_, "[] --noise"),
    "interpolate": (np.bool_, "[] --interpolate"),
    "fps": (np.float64, "[] frames per second"),
}
# The options a file records: a replay uses them unless given (docs/sampling.md).
SETTING_KEYS = ("truncation", "noise", "interpolate", "fps")
OPTIONAL_KEYS = ("classes", *SETTING_KEYS)


def latents_bytes(num_videos: int, n_frames: int, latent_dim: int) -> int:
    """Bytes of the float arrays of a latents file."""
    return 4 * num_videos * latent_dim * (2 * n_frames)


class LatentsFile:
    """A latents .npz file (`--save-latents`): read without pickle, every array checked, then
    replayed batch by batch."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise MocohdError("latents file not found" if not self.path.exists() else "the latents file is not a file",
                              path=self.path, fix="pass a .npz written by `mocohd sample --save-latents`")
        self.arrays = self._read()
        self._check_shapes()

    def _error(self, message: str, key: str | None = None) -> MocohdError:
        where = f"key {key!r}: " if key else ""
        return MocohdError(f"{where}{message}", path=self.path,
                           fix="pass a .npz written by `mocohd sample --save-latents` (keys: "
                               + ", ".join(LATENT_KEYS) + ")")

    def _read(self) -> dict[str, np.ndarray]:
        try:
            npz = np.load(self.path, allow_pickle=False)
        except Exception as exc:  # numpy raises several types for files that are no .npz
            raise self._error(f"not a readable .npz latents file ({type(exc).__name__}: {exc})") from exc
        if not isinstance(npz, np.lib.npyio.NpzFile):
            raise self._error("an .npy array, not an .npz latents file")
        with npz:
            unknown = sorted(set(npz.files) - set(LATENT_KEYS))
            if unknown:
                raise self._error(f"unknown key(s) {', '.join(map(repr, unknown))}")
            # The zip directory says how large each array is: refuse before inflating it.
            size = sum(info.file_size for info in npz.zip.infolist())
            if size > MAX_LATENTS_BYTES + 1024 * len(LATENT_KEYS):
                raise self._error(f"its arrays take {size / 2 ** 30:.1f} GiB; replay takes at most "
                                  f"{MAX_LATENTS_BYTES / 2 ** 30:g} GiB")
            arrays = {}
            for key in npz.files:
                try:
                    arrays[key] = npz[key]
                except Exception as exc:  # object arrays (pickle) and damaged members
                    raise self._error(f"cannot read ({type(exc).__name__}: {exc})", key) from exc
        missing = [key for key in LATENT_KEYS if key not in arrays and key not in OPTIONAL_KEYS]
        if missing:
            raise self._error(f"missing key(s) {', '.join(map(repr, missing))}")
        for key, array in arrays.items():
            dtype, what = LATENT_KEYS[key]
            if array.dtype.type is not dtype:
                raise self._error(f"has dtype {array.dtype}, expected {np.dtype(dtype).name} ({what})", key)
            if array.dtype.kind == "f" and not np.isfinite(array).all():
                raise self._error("holds NaN or inf values", key)
        return arrays

    def _check_shapes(self) -> None:
        a = self.arrays
        content, traj = a["content"], a["trajectories"]
        if traj.ndim != 3 or traj.shape[0] < 1 or traj.shape[1] < 1:
            raise self._error(f"has shape {traj.shape}, expected {LATENT_KEYS['trajectories'][1]}", "trajectories")
        n, t, d = traj.shape
        expected = {"content": (n, d), "motion_noise": (n, t - 1, d), "synthesis_seeds": (n,), "classes": (n,),
                    **{key: () for key in SETTING_KEYS}}
        for key, shape in expected.items():
            if key in a and a[key].shape != shape:
                raise self._error(f"has shape {a[key].shape}, expected {shape} for trajectories of shape "
                                  f"{traj.shape} ({LATENT_KEYS[key][1]})", key)
        if not np.array_equal(traj[:, 0], content):
            raise self._error("the trajectories do not start at the content codes (trajectories[:, 0] != content)",
                              "trajectories")
        if "noise" in a and str(a["noise"]) not in NOISE_MODES:
            raise self._error(f"{str(a['noise'])[:40]!r} is not a noise mode ({', '.join(NOISE_MODES)})", "noise")
        if "fps" in a:
            try:
                check_fps(float(a["fps"]))
            except MocohdError as exc:
                raise self._error(exc.message.replace("--fps", "the frame rate"), "fps") from exc
        self.count, self.frames, self.latent_dim = n, t, d

    def settings_values(self) -> dict:
        """The sampling options the file was written with (SETTING_KEYS it records)."""
        return {key: self.arrays[key].item() for key in SETTING_KEYS if key in self.arrays}

    def check(self, backbone: ImageGenerator, motion: MotionGenerator | None) -> None:
        """The file belongs to this backbone (and motion model): latent size, classes."""
        if self.latent_dim != backbone.latent_dim:
            raise self._error(f"holds {self.latent_dim}-d latents but backbone {backbone.name!r} has "
                              f"{backbone.latent_dim}-d latents", "trajectories")
        if motion is not None and self.latent_dim != motion.latent_dim:
            raise self._error(f"holds {self.latent_dim}-d motion noise but the motion model takes "
                              f"{motion.latent_dim}-d noise", "motion_noise")
        classes = self.arrays.get("classes")
        if backbone.condition_dim and classes is None:
            raise self._error(f"backbone {backbone.name!r} is conditional: the file needs the videos' classes",
                              "classes")
        if not backbone.condition_dim and classes is not None:
            raise self._error(f"backbone {backbone.name!r} is unconditional: the file must not hold classes",
                              "classes")
        if classes is not None and not ((classes >= 0) & (classes < backbone.condition_dim)).all():
            raise self._error(f"class indices must be in 0..{backbone.condition_dim - 1}", "classes")

    def batches(self, batch_size: int) -> Iterator[LatentBatch]:
        a = self.arrays
        for start in range(0, self.count, batch_size):
            rows = slice(start, start + batch_size)
            yield LatentBatch(start, *(torch.from_numpy(a[key][rows]) for key in
                                       ("content", "motion_noise", "trajectories", "synthesis_seeds")),
                              None if "classes" not in a else torch.from_numpy(a["classes"][rows]))


class LatentsWriter:
    """Collects the latents of the videos as they are made and writes them as one .npz, with the
    `options` (SETTING_KEYS; None: not recorded) a replay needs. Made before any video, it checks
    that the file can be written then."""

    def __init__(self, path: str | Path, options: dict, *, num_videos: int, n_frames: int, latent_dim: int):
        self.path, self.batches = Path(path), []
        self.options = {key: value for key, value in options.items() if value is not None}
        size = latents_bytes(num_videos, n_frames, latent_dim)
        if size > MAX_LATENTS_BYTES:
            raise MocohdError(f"--save-latents would hold {size / 2 ** 30:.1f} GiB of latents (at most "
                              f"{MAX_LATENTS_BYTES / 2 ** 30:g} GiB)", path=self.path,
                              fix="sample fewer videos or frames per call")
        check_writable_file(self.path, "the latents file (--save-latents)",
                            fix="pass a file name such as latents.npz in a folder you can write to")

    def add(self, batch: LatentBatch) -> None:
        self.batches.append(batch)

    def write(self) -> Path:
        def cat(key):
            return torch.cat([getattr(b, key) for b in self.batches]).numpy()

        arrays = {"content": cat("content"), "motion_noise": cat("motion_noise"), "trajectories": cat("trajectories"),
                  "synthesis_seeds": cat("synthesis_seeds")}
        arrays.update({key: np.array(value, dtype=LATENT_KEYS[key][0]) for key, value in self.options.items()})
        if self.batches[0].labels is not None:
            arrays["classes"] = cat("labels")
        with atomic_path(self.path) as tmp, open(tmp, "wb") as handle:  # a handle: savez would append .npz
            np.savez(handle, **arrays)
        return self.path


def open_latents(settings: SampleSettings) -> LatentsFile | None:
    """The --latents file, read and checked on its own; it fills the options it records that
    were not given (so its videos replay exactly)."""
    if settings.latents is None:
        return None
    latents = LatentsFile(settings.latents)
    for key, value in latents.settings_values().items():
        if key not in settings.given:
            setattr(settings, key, value)
    settings.num_videos, settings.frames = latents.count, latents.frames
    if settings.decomposition is not None and math.prod(settings.decomposition) != latents.count:
        rows, cols = settings.decomposition
        raise MocohdError(f"--decomposition {rows} {cols} lays out {rows * cols} videos; the file holds "
                          f"{latents.count}", path=latents.path, fix="pass R C with R*C equal to that")
    return latents


# -- models ---------------------------------------------------------------------------------------
def prepare_sampling(settings: SampleSettings, *, progress=None) -> tuple[ImageGenerator, MotionGenerator | None, dict]:
    """The backbone (with the settings' truncation), the motion model and the motion model's
    metadata ({} for an untrained one, used when there is no --motion; None and {} when a
    --latents file is replayed without --motion: it needs no motion model)."""
    settings.validate()
    device = resolve_device(settings.device)
    if settings.motion is not None:
        backbone, motion, info = load_motion_and_backbone(settings.motion, checkpoint=settings.checkpoint,
                                                          backbone=settings.backbone, device=device,
                                                          truncation=settings.truncation)
        return backbone, motion, info
    backbone = load_backbone(settings.backbone, settings.checkpoint, device=device, truncation=settings.truncation)
    if settings.latents is not None:
        return backbone, None, {}
    return backbone, untrained_motion(backbone, device, progress=progress).eval(), {}


def untrained_motion(backbone: ImageGenerator, device, *, h_dim: int | None = None, n_pca: int | None = None,
                     pca_samples: int = PREVIEW_PCA_SAMPLES, progress=None) -> MotionGenerator:
    """A freshly initialised motion model with the backbone's real PCA statistics and the given sizes
    (default: the release's); its weights come from seed 0, so the same seed still gives the same bytes."""
    n_pca = n_pca or default_n_pca(backbone)
    components, stdev = motion_pca(backbone, n_pca=n_pca, n_samples=pca_samples, progress=progress)
    torch.manual_seed(0)
    return MotionGenerator(backbone.latent_dim, h_dim=h_dim or DEFAULT_H_DIM, n_pca=n_pca,
                           pca_components=components, pca_stdev=stdev).to(device)


# -- writing --------------------------------------------------------------------------------------
@dataclass
class SampleResult:
    files: list[Path]
    num_videos: int
    frames: int  # per video, as written
    width: int
    height: int
    latents: Path | None = None


def _dealt(batches: Iterator[LatentBatch], share) -> Iterator[LatentBatch]:
    return (batch for k, batch in enumerate(batches) if is_mine(k, share))


def _dealt_latents(backbone: ImageGenerator, motion: MotionGenerator, specs: Iterator[VideoSpec], *, n_frames: int,
                   classes: list[int] | None, batch_size: int, share) -> Iterator[LatentBatch]:
    """The latent batches of `specs` that are this rank's (batch k: rank k % world_size's), each
    drawn from the same `batch_size` videos as one process draws it (the batched LSTM rounds the
    same), the others skipped undrawn."""
    for k in itertools.count():
        group = list(itertools.islice(specs, batch_size))
        if not group:
            return
        if is_mine(k, share):
            for batch in draw_latents(backbone, motion, group, n_frames=n_frames, classes=classes,
                                      batch_size=batch_size):
                yield dataclasses.replace(batch, start=k * batch_size)


def _gathered_latents(context, batches: list[LatentBatch], *, labels: bool) -> list[LatentBatch] | None:
    """Every rank's latent batches, in the global order, on rank 0 (None on the others)."""
    fields = ("content", "motion_noise", "trajectories", "synthesis_seeds") + (("labels",) if labels else ())
    columns = [gather_batches(context, [getattr(b, name) for b in batches]) for name in fields]
    starts = gather_plain(context, [b.start for b in batches])
    if starts is None:
        return None
    return [LatentBatch(start, *(column[i] for column in columns)) for i, start in enumerate(dealt_order(starts))]


def sample_videos(settings: SampleSettings, backbone: ImageGenerator, motion: MotionGenerator | None, *,
                  fps: float, latents: LatentsFile | None = None, progress=None, context=None) -> SampleResult:
    """Make the videos the settings (or the `latents` file) describe and write them to
    settings.out batch by batch: one file each, or one grid (--grid, --decomposition). Memory is
    one batch (or the one grid) whatever the number of videos; progress(done, total) after each
    batch.

    Under torchrun (`context`, infra/distributed.py) the batches are dealt over the ranks (batch k
    is rank k % world_size's); each rank writes the files of its own videos, rank 0 the grid and
    the latents file (gathered), so every file is written once, byte for byte what one process
    writes. Rank 0's result counts every rank's files."""
    fps = check_fps(fps, settings.format)
    grid = settings.grid or settings.decomposition is not None
    if latents is not None:
        latents.check(backbone, motion)
        count = latents.count
    else:
        count, specs = planned_videos(settings)
    frames_out = 2 * settings.frames - 1 if settings.interpolate else settings.frames
    shape = (frames_out, 3, backbone.resolution, backbone.resolution)
    video_bytes = 4 * math.prod(shape)
    if video_bytes > MAX_HELD_BYTES:
        raise MocohdError(f"--frames {settings.frames} makes videos of {video_bytes / 2 ** 30:.1f} GiB each at "
                          f"{backbone.resolution} px (at most {MAX_HELD_BYTES / 2 ** 30:g} GiB are held at once)",
                          fix="sample fewer frames per video")
    if grid and GridCanvas.nbytes(count, shape, nrow=settings.grid_columns) > MAX_HELD_BYTES:
        option = "--decomposition" if settings.decomposition else "--grid"
        raise MocohdError(f"{option}: a grid of {count} videos of {frames_out} frames at {backbone.resolution} px "
                          f"would take {GridCanvas.nbytes(count, shape, nrow=settings.grid_columns) / 2 ** 30:.1f} "
                          f"GiB (at most {MAX_HELD_BYTES / 2 ** 30:g} GiB)",
                          fix="fewer videos or frames in a grid, or one file per video (no --grid)")
    batch_size = max(1, min(settings.batch_size, MAX_HELD_BYTES // video_bytes))
    share, main = share_of(context), context is None or context.is_main
    saver = None
    if settings.save_latents is not None and main:
        truncation = settings.truncation
        if latents is not None and not backbone.truncation_in_synthesis:
            # the file's trajectories are fixed: --truncation changed nothing, the file's value stands
            truncation = latents.settings_values().get("truncation")
        saver = LatentsWriter(settings.save_latents, {"truncation": truncation, "noise": settings.noise,
                                                      "interpolate": settings.interpolate, "fps": fps},
                              num_videos=count, n_frames=settings.frames, latent_dim=backbone.latent_dim)
    out = check_out_dir(settings.out)
    if latents is not None:
        batches = _dealt(latents.batches(batch_size), share)
    else:
        batches = _dealt_latents(backbone, motion, specs, n_frames=settings.frames, classes=settings.classes,
                                 batch_size=batch_size, share=share)
    alone = context is None or not context.enabled
    files, canvas, height, width = [], None, backbone.resolution, backbone.resolution
    mine, starts, grid_frames, files_by_batch, done = [], [], [], [], 0
    share_total = sum(min(batch_size, count - k * batch_size) for k in range(share[0], -(-count // batch_size),
                                                                             share[1]))
    for batch in batches:
        frames = render(backbone, batch, noise=settings.noise, interpolate=settings.interpolate)
        height, width = frames.shape[-2:]
        if grid and alone:
            canvas = canvas or GridCanvas(count, tuple(frames.shape[1:]), nrow=settings.grid_columns)
            canvas.paste(batch.start, frames)
        elif grid:
            grid_frames.append(frames)
        else:
            files_by_batch.append(write_videos(frames, out, fps=fps, fmt=settings.format, start=batch.start,
                                               total=count))
            files += files_by_batch[-1]
        if saver is not None and alone:
            saver.add(batch)
        if settings.save_latents is not None and not alone:
            mine.append(batch)
        starts.append(batch.start)
        done += len(batch)
        if progress is not None:  # this rank's videos
            progress(batch.start + len(batch) if alone else done, count if alone else share_total)
    if not alone:  # rank 0 gathers what the ranks made, then writes the grid and the latents file
        per_rank = gather_plain(context, [[str(f) for f in batch_files] for batch_files in files_by_batch])
        starts = gather_plain(context, starts)
        gathered = gather_batches(context, grid_frames) if grid else None
        all_latents = (_gathered_latents(context, mine, labels=bool(backbone.condition_dim))
                       if settings.save_latents is not None else None)
        if not main:
            return SampleResult(files, count, frames_out, int(width), int(height), None)
        files = [Path(name) for batch_files in dealt_order(per_rank) for name in batch_files]
        for start, frames in zip(dealt_order(starts), gathered or []):
            canvas = canvas or GridCanvas(count, tuple(frames.shape[1:]), nrow=settings.grid_columns)
            canvas.paste(start, frames)
            height, width = frames.shape[-2:]
        for batch in all_latents or []:
            saver.add(batch)
    if grid:
        stem = "decomposition_{}x{}".format(*settings.decomposition) if settings.decomposition else "video_grid"
        files.append(save_video(canvas.frames, output_file(out, stem, settings.format), fps))
    written_latents = saver.write() if saver is not None else None
    return SampleResult(files, count, frames_out, int(width), int(height), written_latents)
