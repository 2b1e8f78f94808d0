"""Datasets as tar shards (the webdataset format), read and written with the webdataset library.

A shard spec is what `--data` / `--real` take: `DIR/NAME-{000000..000099}.tar` (brace notation),
several joined by `::`, URLs (`http://...`, `s3://...` as the library opens them) or
`pipe:COMMAND` (the command writes the tar to its standard output). Each sample of a shard is
one video: a video file member (`KEY.mp4`, `KEY.gif`, ...) or a frame sequence (`KEY.0000.png`,
`KEY.0001.png`, ... in natural order). Shards are streamed: one sample is in memory at a time,
nothing is indexed up front, so a set of 100,000+ videos costs no more memory than one.

Reading (`shard_samples`, `ShardClips`): shards are dealt over the consumers (rank x loader worker)
in a seeded order per epoch; with fewer shards than consumers, the samples are dealt instead.
A consumer's stream depends only on the seed, its rank and worker and the counts of each, so a run
resumed at batch b (`start_batch`) reads exactly what the uninterrupted run would have. A member that
cannot be decoded is skipped with a warning naming shard and member (and counted); a shard that
cannot be opened or is not a tar is a MocohdError naming it (exit 2). Everything that reads shards
imports webdataset lazily.
"""
from __future__ import annotations

from dataclasses import dataclass, field
import io
import logging
from pathlib import Path
import random
import re
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from ..infra.errors import MocohdError
from ..infra.settings import torch_seed
from .decode import decode_image, probe_video, read_frames
from .decode import reason as _reason
from .index import scan
from .pixels import frames_to_clip
from .storage import IMAGE_SUFFIXES, VIDEO_SUFFIXES, natural_key, open_storage

log = logging.getLogger(__name__)

_TAR = re.compile(r"\.(tar|tar\.gz|tgz)$", re.IGNORECASE)


def is_shard_spec(data) -> bool:
    """True for a tar-shard spec (a .tar path or pattern, a URL or `pipe:` form), False for the
    folders, zips and video folders the other readers take."""
    text = str(data)
    if Path(text).is_dir():  # a folder is a folder, whatever its name
        return False
    if text.startswith("pipe:") or re.match(r"^[a-z][a-z0-9+.-]*://", text):
        return True
    return any(_TAR.search(part.strip()) for part in text.split("::")) or ("{" in text and ".tar" in text)


def _is_local(url: str) -> bool:
    return not (url.startswith("pipe:") or re.match(r"^[a-z][a-z0-9+.-]*://", url))


def expand_shards(spec) -> list[str]:
    """The shard URLs of a spec (brace notation expanded by the library). Local shards must exist:
    a pattern that matches none, or some missing, is a MocohdError naming them."""
    import webdataset as wds

    urls = wds.shardlists.expand_urls(str(spec))
    if not urls:
        raise MocohdError("the shard spec names no shards", path=str(spec))
    local = [u for u in urls if _is_local(u)]
    missing = [u for u in local if not Path(u.removeprefix("file:")).is_file()]
    if missing and len(missing) == len(urls):
        raise MocohdError(f"the shard spec matches no shard: none of its {len(urls)} file(s) exist "
                          f"(first: {missing[0]})", path=str(spec),
                          fix="check the folder and the brace range, e.g. 'DIR/NAME-{000000..000009}.tar'")
    if missing:
        raise MocohdError(f"{len(missing)} of the {len(urls)} shards do not exist (first: {missing[0]})",
                          path=str(spec), fix="check the brace range against the files written")
    return urls


@dataclass
class ShardReport:
    """What a pass over shards skipped: (shard, member, reason) of undecodable members, too-short
    videos, and samples with no video in them."""

    corrupt: list[tuple[str, str, str]] = field(default_factory=list)
    too_short: list[str] = field(default_factory=list)
    empty: int = 0

    spec: str = ""

    def summary(self) -> str:
        text = f"tar shards {self.spec} (streamed)"
        if self.too_short:
            text += f"; {len(self.too_short)} too short skipped so far"
        if self.corrupt:
            text += f"; {len(self.corrupt)} unreadable skipped so far"
        return text

    def skip(self, url: str, member: str, why: str) -> None:
        self.corrupt.append((url, member, why))
        log.warning("skipping %s in shard %s: %s (%d skipped so far)", member, url, why, len(self.corrupt))


class _Members:
    """One sample's members as the storage decode.py reads (read / open by name)."""

    def __init__(self, members: dict[str, bytes]):
        self.members = members

    def read(self, name: str) -> bytes:
        return self.members[name]

    def open(self, name: str):
        return io.BytesIO(self.members[name])


@dataclass
class ShardVideo:
    """One video of a shard: a video file member, or frame members in order."""

    url: str
    key: str
    members: _Members
    file: str | None = None
    frames: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.file or (self.frames[0] if self.frames else self.key)

    def length(self) -> int:
        if self.file is None:
            return len(self.frames)
        return probe_video(self.members.open(self.file), self.file).frames

    def read(self, indices: list[int]) -> np.ndarray:
        """uint8 [len(indices), H, W, 3]; ValueError when it cannot be decoded."""
        if self.file is not None:
            frames = read_frames(self.members.open(self.file), list(indices), name=self.file)
        else:
            frames = [decode_image(self.members, self.frames[i]) for i in indices]
        try:
            return np.stack(frames)
        except ValueError as exc:
            raise ValueError("its frames do not all have the same size") from exc


def _video(sample: dict) -> ShardVideo | None:
    key, url = sample["__key__"], sample.get("__url__", "?")
    members = {name: data for name, data in sample.items() if not name.startswith("__")}
    named = {f"{key}.{ext}": data for ext, data in members.items()}
    store = _Members(named)
    videos = sorted(n for n in named if Path(n).suffix.lower() in VIDEO_SUFFIXES)
    if videos:
        return ShardVideo(url, key, store, file=videos[0])
    images = sorted((n for n in named if Path(n).suffix.lower() in IMAGE_SUFFIXES), key=natural_key)
    return ShardVideo(url, key, store, frames=tuple(images)) if images else None


def _raise_shard_error(exn: Exception) -> bool:
    where = [a for a in exn.args[1:] if isinstance(a, str)]
    shard = where[-1] if where else "?"
    why = exn.args[0] if exn.args and isinstance(exn.args[0], str) else _reason(exn)
    raise MocohdError(f"cannot read this shard: {why}", path=shard,
                      fix="a dataset is a folder or a .zip (of frame folders or video files), or complete webdataset tar "
            "shards (write them with `mocohd data shard`)") from exn


def _shard_stream(url: str) -> Iterator[dict]:
    """The samples (dicts of members by extension) of one shard, via the webdataset library."""
    from webdataset import tariterators

    stream = tariterators.url_opener([{"url": url}], handler=_raise_shard_error)
    files = tariterators.tar_file_expander(stream, handler=_raise_shard_error, eof_value=None)
    yield from tariterators.group_by_keys(files, handler=_raise_shard_error)


def shard_samples(urls: list[str], report: ShardReport | None = None) -> Iterator[ShardVideo]:
    """Every video of `urls`, in order (samples without an image or video member are counted)."""
    report = report if report is not None else ShardReport()
    for url in urls:
        for sample in _shard_stream(url):
            video = _video(sample)
            if video is None:
                report.empty += 1
                continue
            yield video


def leading_videos(urls: list[str], *, span: int, count: int, report: ShardReport
                   ) -> Iterator[tuple[ShardVideo, int]]:
    """(video, length) of the first `count` videos of `urls`, in order, that hold `span` frames; the
    others are counted in `report` (too short, unreadable). One video's bytes are held at a time."""
    found = 0
    for video in shard_samples(urls, report):
        if found >= count:
            return
        try:
            length = video.length()
        except Exception as exc:
            report.skip(video.url, video.name, _reason(exc))
            continue
        if length < span:
            report.too_short.append(video.name)
            continue
        found += 1
        yield video, length


def consumer_shards(urls: list[str], *, seed: int, epoch: int, consumer: int, consumers: int
                    ) -> tuple[list[str], int | None]:
    """(shards this consumer reads, sample stride or None): shards dealt in a seeded order per epoch;
    with fewer shards than consumers every consumer reads all of them and takes every
    `consumers`-th sample (returned as the stride, the consumer's offset being its number)."""
    rng = torch.Generator().manual_seed(torch_seed(seed * 1_000_003 + epoch))
    order = [urls[i] for i in torch.randperm(len(urls), generator=rng).tolist()]
    if len(urls) >= consumers:
        return order[consumer::consumers], None
    return order, consumers


class ShardClips(IterableDataset):
    """An endless stream of clips [n_frames, 3, size, size] in [-1, 1] (or of batches of them, with
    `batch_size`) from tar shards, for rank `rank` of `world_size`, split again over DataLoader
    workers. `start_batch`: the batches of this rank already consumed (resume), skipped without
    decoding."""

    def __init__(self, spec, *, n_frames: int, time_step: int, size: int, seed: int = 0, rank: int = 0,
                 world_size: int = 1, batch_size: int = 1, start_batch: int = 0):
        self.urls = expand_shards(spec)
        self.spec, self.n_frames, self.time_step, self.size, self.seed = str(spec), n_frames, time_step, size, seed
        self.rank, self.world_size, self.batch_size, self.start_batch = rank, world_size, batch_size, start_batch
        self.span = (n_frames - 1) * time_step + 1  # clips.clip_span
        self.report = ShardReport(spec=self.spec)
        next(iter(_shard_stream(self.urls[0])), None)  # an unreadable first shard is an error now, not in a worker

    @property
    def entries(self):
        """Shards are streamed: there is no list of videos (what the latent phase's projections and the
        identity reader walk)."""
        raise MocohdError("this needs every video listed up front, and tar shards are streamed", path=self.spec,
                          fix="pass the videos as a folder (`mocohd data shard` wrote them from one)")

    def _consumer(self) -> tuple[int, int, int]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        # the loader takes a batch from worker 0, 1, ... in turn, so batch b is from the worker of role b % W;
        # resumed at batch s, worker 0 (asked first) plays role s % W, and each role skips its batches before s
        role = (worker + self.start_batch) % workers
        skip = max(0, (self.start_batch - role + workers - 1) // workers)
        return self.rank * workers + role, self.world_size * workers, skip

    def _clips(self) -> Iterator[torch.Tensor]:
        consumer, consumers, skip = self._consumer()
        skip *= self.batch_size
        epoch, produced = 0, 0
        while True:
            shards, stride = consumer_shards(self.urls, seed=self.seed, epoch=epoch, consumer=consumer,
                                             consumers=consumers)
            seen = 0
            for i, video in enumerate(shard_samples(shards, self.report)):
                if stride is not None and i % stride != consumer:
                    continue
                seen += 1
                if skip:
                    skip -= 1
                    continue
                try:
                    length = video.length()
                    if length < self.span:
                        self.report.too_short.append(video.name)
                        continue
                    rng = random.Random(f"{self.seed}/{epoch}/{video.url}/{video.key}")
                    start = rng.randrange(length - self.span + 1)
                    frames = video.read(list(range(start, start + self.span, self.time_step)))
                except Exception as exc:
                    self.report.skip(video.url, video.name, _reason(exc))
                    continue
                produced += 1
                yield frames_to_clip(frames, self.size)
            if not seen or (epoch > 0 and not produced):
                raise MocohdError(f"no usable clip in the shards of consumer {consumer} of {consumers}: "
                                  f"{len(self.report.too_short)} too short, {len(self.report.corrupt)} unreadable, "
                                  f"{self.report.empty} without a video", path=self.spec,
                                  fix="use more shards than ranks x workers, longer videos or fewer --frames")
            epoch += 1

    def __iter__(self) -> Iterator[torch.Tensor]:
        if self.batch_size <= 1:
            yield from self._clips()
            return
        batch = []
        for clip in self._clips():
            batch.append(clip)
            if len(batch) == self.batch_size:
                yield torch.stack(batch)
                batch = []


    def stream(self, batch_size: int, *, rank: int = 0, world_size: int = 1, start_batch: int = 0, workers: int = 0,
               pin_memory: bool = False) -> Iterator[torch.Tensor]:
        """What clips.clip_loader returns for shards: endless batches [B, T, 3, S, S] of this rank."""
        self.batch_size, self.rank, self.world_size, self.start_batch = batch_size, rank, world_size, start_batch
        return shard_loader(self, workers=workers, pin_memory=pin_memory)


def shard_loader(dataset: ShardClips, *, workers: int = 0, pin_memory: bool = False) -> Iterator[torch.Tensor]:
    """Endless iterator of batches [B, T, 3, S, S] of a ShardClips made with batch_size B."""
    loader = DataLoader(dataset, batch_size=None, num_workers=workers, pin_memory=pin_memory,
                        persistent_workers=workers > 0, prefetch_factor=2 if workers > 0 else None)
    return iter(loader)


# -- writing -----------------------------------------------------------------------------------
def _key(name: str) -> str:
    """A sample key from a dataset name: no dots (the library splits key and extension at the first)."""
    return re.sub(r"[^A-Za-z0-9_/-]", "_", str(Path(name).with_suffix("")) if Path(name).suffix else name)


def write_shards(src, out: Path, *, name: str = "shard", per_shard: int | None = None,
                 max_bytes: float | None = None, progress=None) -> tuple[list[Path], int]:
    """Write every usable video of `src` (anything `--data` reads: a folder, a zip, or shards) to
    `out/NAME-000000.tar`, ... with at most `per_shard` videos or about `max_bytes` bytes each.
    The same input gives the same bytes (member times fixed). Returns (shards, videos written)."""
    import webdataset as wds

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if any(out.glob(f"{name}-*.tar")):
        raise MocohdError(f"{out} already holds {name}-*.tar shards", path=out,
                          fix="write to an empty folder, or pick another --name")
    samples = _source_samples(src)
    writer = wds.ShardWriter(str(out / f"{name}-%06d.tar"), maxcount=per_shard or 10 ** 12,
                             maxsize=max_bytes or 3e9, verbose=0, mtime=0.0)
    written, keys = 0, set()
    try:
        for key, members in samples:
            while key in keys:
                key += "_"
            keys.add(key)
            writer.write({"__key__": key, **members})
            written += 1
            if progress is not None:
                progress(written)
    finally:
        writer.close()
    return sorted(out.glob(f"{name}-*.tar")), written


def _source_samples(src) -> Iterator[tuple[str, dict[str, bytes]]]:
    if is_shard_spec(src):
        for video in shard_samples(expand_shards(src)):
            yield video.key, {n[len(video.key) + 1:]: d for n, d in video.members.members.items()}
        return
    storage = open_storage(Path(src), given_as="`mocohd data shard SRC`")
    for record in scan(storage).usable:
        if record.kind == "video":
            yield _key(record.name), {Path(record.name).suffix.lower().lstrip("."): storage.read(record.name)}
        else:
            yield _key(record.name), {f"{i:06d}{Path(f).suffix.lower()}": storage.read(f)
                                      for i, f in enumerate(record.files)}
