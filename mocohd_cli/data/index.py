"""The index of a dataset: its videos (frame folders and video files), how many frames each has,
their rate and size, and the files that cannot be used and why.

Reading a video file's header takes about a millisecond, but a large dataset has tens of
thousands of them, so the index is cached per dataset under <cache>/index/ (JSON, written
atomically): a second run reads only the files that are new or changed. A file is known by its
size and modification time (in a zip: its size and CRC; an unchanged zip is trusted whole).
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

from ..infra.console import progress
from ..infra.files import atomic_path, cache_dir
from .decode import VideoInfo, decode_image, probe_video, reason
from ..infra.errors import MocohdError
from .storage import IMAGE_SUFFIXES, VIDEO_SUFFIXES, natural_key

INDEX_VERSION = 2
# Threads that read headers: FFmpeg does the work, mostly outside Python's lock.
_PROBE_THREADS = 4


@dataclass(frozen=True)
class Record:
    """One video of a dataset: a frame folder (kind "frames") or a video file (kind "video")."""

    name: str
    kind: str
    frames: int = 0
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    first_pts: int | None = None  # how clips are found in a video file: see decode.VideoInfo
    seek: str | None = None
    error: str | None = None  # why it cannot be used
    files: tuple[str, ...] = field(default=(), compare=False)  # a frame folder's images, in order

    @property
    def info(self) -> VideoInfo | None:
        if self.kind != "video" or self.error:
            return None
        return VideoInfo(frames=self.frames, width=self.width, height=self.height, fps=self.fps,
                         first_pts=self.first_pts, seek=self.seek)


@dataclass
class DatasetIndex:
    root: Path
    records: list[Record]  # natural order of names
    cache: Path | None  # where the index was saved (None: it could not be)
    read: int = 0  # files read this time (the rest came from the cache)
    seconds: float = 0.0
    # files that are neither images nor videos (metadata, notes), left out: suffix ("" for none) -> count
    ignored: dict[str, int] = field(default_factory=dict)
    ignored_example: str | None = None  # one such file's name

    @property
    def usable(self) -> list[Record]:
        return [r for r in self.records if not r.error]

    @property
    def skipped(self) -> list[Record]:
        return [r for r in self.records if r.error]

    def fps_histogram(self) -> Counter:
        return Counter(None if r.fps is None else round(r.fps, 2) for r in self.usable)

    def resolution_histogram(self) -> Counter:
        return Counter((r.width, r.height) for r in self.usable)

    def length_histogram(self) -> Counter:
        """Videos by frame count, in bins: 1-15, 16-31, 32-63, ... (keys are the bins' lower ends)."""
        bins = Counter()
        for r in self.usable:
            low = 1 if r.frames < 16 else 1 << (r.frames.bit_length() - 1)
            bins[low] += 1
        return bins


def cache_file(root: Path) -> Path:
    """Where a dataset's index is cached: one JSON file per dataset, named by its absolute path."""
    key = hashlib.sha256(str(Path(root).resolve()).encode()).hexdigest()[:24]
    return cache_dir() / "index" / f"{key}.json"


def _load(path: Path, root: Path) -> tuple[dict, object]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}, None
    if not isinstance(data, dict) or data.get("version") != INDEX_VERSION or data.get("root") != str(root):
        return {}, None
    entries = data.get("entries")
    return (entries if isinstance(entries, dict) else {}), data.get("signature")


def _save(path: Path, root: Path, signature, entries: dict) -> bool:
    data = {"version": INDEX_VERSION, "root": str(root), "signature": signature, "entries": entries}
    try:
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(data, separators=(",", ":")), encoding="utf-8")
    except (OSError, MocohdError):  # atomic_path reports a refused write as a MocohdError
        return False
    return True


def _entry(record: Record, key: list) -> dict:
    entry = {k: v for k, v in asdict(record).items() if k not in ("name", "files") and v is not None}
    entry["key"] = key
    return entry


def _record(name: str, entry: dict, files: tuple[str, ...] = ()) -> Record:
    fields = {k: entry.get(k) for k in ("kind", "frames", "width", "height", "fps", "first_pts", "seek", "error")}
    fields["frames"] = fields["frames"] or 0
    return Record(name=name, files=files, **fields)


def _probe_file(storage, name: str, key: list) -> Record:
    if key and key[0] == 0:
        return Record(name, "video", error="empty file")
    try:
        source = storage.open(name)
    except Exception as exc:
        return Record(name, "video", error=reason(exc))
    try:
        info = probe_video(source, name)
    except Exception as exc:
        return Record(name, "video", error=reason(exc))
    finally:
        if hasattr(source, "close"):
            source.close()
    return Record(name, "video", frames=info.frames, width=info.width, height=info.height, fps=info.fps,
                  first_pts=info.first_pts, seek=info.seek)


def _probe_folder(storage, name: str, files: tuple[str, ...]) -> Record:
    """A frame folder: its first image is decoded (a cheap check that catches most broken ones)."""
    try:
        first = decode_image(storage, files[0])
    except Exception as exc:
        return Record(name, "frames", frames=len(files), error=reason(exc), files=files)
    return Record(name, "frames", frames=len(files), width=first.shape[1], height=first.shape[0], files=files)


def scan(storage, *, cache: bool = True, show_progress: bool = True) -> DatasetIndex:
    """Index a dataset (a storage.open_storage), reading only what the cache does not already know."""
    started = time.perf_counter()
    root = Path(storage.root).resolve()
    frame_dirs: dict[str, list[str]] = {}
    video_files: list[str] = []
    ignored: dict[str, int] = {}
    ignored_example = None
    for name in storage.files():
        suffix = PurePosixPath(name).suffix.lower()
        if suffix in IMAGE_SUFFIXES:
            frame_dirs.setdefault(str(PurePosixPath(name).parent), []).append(name)
        elif suffix in VIDEO_SUFFIXES:
            video_files.append(name)
        else:
            ignored[suffix] = ignored.get(suffix, 0) + 1
            ignored_example = ignored_example or name

    path = cache_file(root) if cache else None
    cached, cached_signature = _load(path, root) if path else ({}, None)
    signature = storage.signature()
    trusted = signature is not None and signature == cached_signature  # an unchanged zip

    def known(name: str, kind: str, key: list) -> dict | None:
        entry = cached.get(name)
        if isinstance(entry, dict) and entry.get("kind") == kind and (trusted or entry.get("key") == key):
            return entry
        return None

    records: dict[str, Record] = {}
    entries: dict[str, dict] = {}
    todo: list[tuple[str, tuple[str, ...] | None, list]] = []
    for folder, files in frame_dirs.items():
        files = tuple(sorted(files, key=natural_key))
        try:
            key = [len(files), files[0], *storage.key(files[0])]
        except OSError:
            key = [len(files), files[0]]
        entry = known(folder, "frames", key)
        if entry is None:
            todo.append((folder, files, key))
        else:
            records[folder], entries[folder] = _record(folder, entry, files), entry
    for name in video_files:
        try:
            key = storage.key(name)
        except OSError:
            key = []
        entry = known(name, "video", key)
        if entry is None:
            todo.append((name, None, key))
        else:
            records[name], entries[name] = _record(name, entry), entry

    if todo:
        def work(item):
            name, files, key = item
            return _probe_folder(storage, name, files) if files is not None else _probe_file(storage, name, key)

        bar = progress()
        bar.disable = bar.disable or not show_progress
        with bar, ThreadPoolExecutor(min(_PROBE_THREADS, os.cpu_count() or 1)) as pool:
            task = bar.add_task("indexing videos", total=len(todo))
            for (name, _, key), record in zip(todo, pool.map(work, todo)):
                records[name], entries[name] = record, _entry(record, key)
                bar.advance(task)

    saved = None
    if path is not None:
        changed = bool(todo) or set(entries) != set(cached) or signature != cached_signature
        saved = path if not changed or _save(path, root, signature, entries) else None
    ordered = [records[name] for name in sorted(records, key=natural_key)]
    return DatasetIndex(Path(storage.root), ordered, saved, read=len(todo), seconds=time.perf_counter() - started,
                        ignored=ignored, ignored_example=ignored_example)
