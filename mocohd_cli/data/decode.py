"""Decoding video files in-process with PyAV (FFmpeg's libraries, bundled in its wheels).

- Frames are converted to RGB by FFmpeg's own filter graph (a bicubic `scale` filter, then
  `format=rgb24`): the same conversion the `ffmpeg` command makes when imageio-ffmpeg reads a
  video, so the pixels equal what that reader gave (PyAV's quicker `to_ndarray(format=...)`
  differs for odd frame widths and 10-bit video).
- Frame i of a file is the i-th frame its decoder puts out. A clip that starts late is read by
  seeking to the keyframe before it and decoding forward; the frames met there are numbered by
  their timestamps: frame i is presented i frame durations after frame 0 ("pts" seeking). AVI
  stores decoding times only, so with B-frames its decoded frames carry shuffled timestamps:
  there the keyframe is numbered by its timestamp and the frames after it by counting ("count"
  seeking; a keyframe's decoding and presentation positions agree in a closed GOP). The index
  (probe_video) checks which holds for a file before it is used; a file where neither does
  (variable frame rate, gaps, no timestamps) is read from its start, as is any file whose
  timestamps surprise the reader later.
- GIFs are read with imageio's Pillow plugin, as before: FFmpeg's GIF demuxer turns a GIF whose
  frames have no delay into a single frame.
- `source` is whatever storage.open gives: a path, or a seekable file object (a zip member).
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
import io
from pathlib import Path

from PIL import Image
import numpy as np
from torch.utils.data import get_worker_info

from ..infra.threads import max_decode_threads
from .pixels import pillow_to_rgb

# Frames with at least this many pixels are decoded with FFmpeg's threads outside DataLoader
# workers (in workers, one thread each: the workers are the parallelism).
_THREADED_PIXELS = 640 * 480
# How far before a clip's first frame a seek aims, in frames, on successive tries: a keyframe's
# decoding timestamp precedes its presentation time by the B-frame delay, so a seek aimed at a
# frame can land on the keyframe just after it.
_SEEK_BACK = (2, 16, 64)
# A frame's timestamp may sit this far (in frames) from a whole frame index (rounded time bases).
_PTS_TOLERANCE = 0.25
# Frames decoded when a file is indexed, to see whether their timestamps number them.
_PROBE_FRAMES = 4


@dataclass(frozen=True)
class VideoInfo:
    """What the index knows about a video file."""

    frames: int
    width: int
    height: int
    fps: float | None = None
    # Timestamp of frame 0 (stream time base) and how a clip is found: "pts" (every frame's
    # timestamp numbers it), "count" (keyframes' timestamps number them, the frames after a
    # keyframe are counted) or None (read from the start).
    first_pts: int | None = None
    seek: str | None = None


class _Unseekable(Exception):
    """The timestamps met while seeking do not number the frames: read from the start instead."""


def is_gif(name: str) -> bool:
    return name.lower().endswith(".gif")


def as_rgb(frame: np.ndarray) -> np.ndarray:
    """A decoded frame as [H, W, 3]: grey frames (some GIF frames decode as [H, W]) repeated,
    alpha dropped."""
    if frame.ndim == 2:
        frame = frame[..., None]
    if frame.shape[-1] == 1:
        frame = np.repeat(frame, 3, axis=-1)
    return frame[..., :3]


def reason(exc: BaseException) -> str:
    """The first line of an exception's message (its type when it has none); for FFmpeg's
    errors, its message without the error number and file name."""
    strerror = getattr(exc, "strerror", None)
    if type(exc).__module__.startswith("av") and isinstance(strerror, str) and strerror.strip():
        return strerror.strip()
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def decode_image(storage, name: str) -> np.ndarray:
    """One image file of a dataset as uint8 [H, W, 3]; ValueError naming it if it cannot be read."""
    try:
        with Image.open(io.BytesIO(storage.read(name))) as image:
            return pillow_to_rgb(image, Path(name))
    except Exception as exc:
        raise ValueError(f"{name}: {reason(exc)}") from exc


def _rewind(source):
    if hasattr(source, "seek"):
        source.seek(0)
    return source


def _open(source):
    import av

    return av.open(_rewind(source), mode="r", metadata_errors="ignore")


def _video_stream(container):
    if not container.streams.video:
        raise ValueError("no video stream")
    return container.streams.video[0]


def _rate(stream) -> Fraction | None:
    for rate in (stream.guessed_rate, stream.average_rate, stream.base_rate):
        if rate:
            return Fraction(rate)
    return None


def _set_threads(stream) -> int:
    """One decoding thread (the workers are the parallelism; FFmpeg's threads cost more than they
    save on small frames), or for large frames outside DataLoader workers the command's --threads
    (FFmpeg's choice where no command set them).
    Returns the thread count for the RGB conversion (0: FFmpeg's choice)."""
    context = stream.codec_context
    if get_worker_info() is None and context.width * context.height >= _THREADED_PIXELS:
        threads = max_decode_threads()  # a command's --threads caps FFmpeg's too (0: FFmpeg's choice)
        context.thread_type, context.thread_count = "AUTO", threads
        return threads
    context.thread_count = 1
    return 1


def _decoded(container, stream, packet_times: list | None = None, skip_before: int | None = None):
    """The stream's frames in presentation order. A packet the decoder rejects (a damaged or
    cut-off one) is skipped, as the ffmpeg command does, and the frames after it still come.
    `packet_times` collects the timestamps of the packets read. With `skip_before`, frames shown
    before that timestamp that no other frame refers to are not decoded at all (the frames that
    are decoded come out the same)."""
    from av.error import InvalidDataError

    context = stream.codec_context
    for packet in container.demux(stream):
        if packet_times is not None and _counts(packet):
            packet_times.append(packet.pts)
        if skip_before is not None:
            context.skip_frame = "NONREF" if packet.pts is not None and packet.pts < skip_before else "DEFAULT"
        try:
            yield from packet.decode()
        except InvalidDataError:
            continue


class _ToRGB:
    """Decoded frames -> uint8 [H, W, 3] through an FFmpeg filter graph (rebuilt if the frame
    size or pixel format changes mid-stream)."""

    def __init__(self, stream, threads: int = 1):
        self.time_base = stream.time_base or Fraction(1, 25)
        self.threads, self.graph, self.shape = threads, None, None

    def __call__(self, frame) -> np.ndarray:
        import av.filter

        shape = (frame.width, frame.height, frame.format.name)
        if shape != self.shape:
            graph = av.filter.Graph()
            graph.threads = self.threads
            chain = [graph.add_buffer(width=frame.width, height=frame.height, format=frame.format,
                                      time_base=self.time_base),
                     graph.add("scale", "flags=bicubic"), graph.add("format", "rgb24"), graph.add("buffersink")]
            for a, b in zip(chain, chain[1:]):
                a.link_to(b)
            graph.configure()
            self.graph, self.shape = graph, shape
        self.graph.push(frame)
        return self.graph.pull().to_ndarray()


# -- probing: frame count, rate, size -------------------------------------------------------------
def probe_video(source, name: str = "") -> VideoInfo:
    """Frames, size and rate of a video file, and whether its timestamps number its frames.

    The frame count comes from the container's header when a look at its last keyframe's packets
    confirms it (no decoding: a few ms); when the header has no count (webm, mkv) or a wrong one
    (a truncated file), every packet is counted (reading the file, still without decoding).
    The first frame is decoded, so a file FFmpeg cannot decode is found here, not mid-training.
    Raises ValueError with the reason for a file that cannot be used."""
    if is_gif(name):
        return _probe_gif(source)
    try:
        return _probe_av(source)
    except Exception as exc:  # FFmpeg's errors (invalid data, end of file, ...) and I/O errors
        raise ValueError(reason(exc)) from exc


def _probe_av(source) -> VideoInfo:
    with _open(source) as container:
        stream = _video_stream(container)
        stream.codec_context.thread_count = 1
        first_packets: list = []
        decoded = [frame for _, frame in zip(range(_PROBE_FRAMES), _decoded(container, stream, first_packets))]
        if not decoded:
            raise ValueError("no frame could be decoded")
        shown = [frame.pts for frame in decoded]
        rate, header, time_base = _rate(stream), stream.frames, stream.time_base
        width, height, first_pts = decoded[0].width, decoded[0].height, shown[0]
        clock = _Clock(first_pts, time_base, rate) if first_pts is not None and rate and time_base else None
        counted = None
        if header > 0 and clock is not None:
            counted = _tail_check(container, stream, clock, header)
    if counted is None:
        counted = _count_packets(source, clock)
    frames, packets = counted
    if frames < 1:
        raise ValueError("no video frames")
    seek = None
    if clock is not None and first_packets and first_packets[0] == first_pts:
        numbered = [clock.index(pts) for pts in shown] == list(range(len(shown)))
        if packets == "presentation" and numbered:
            seek = "pts"
        elif packets == "decoding":
            seek = "count"
    return VideoInfo(frames=frames, width=width, height=height, fps=float(rate) if rate else None,
                     first_pts=first_pts if seek else None, seek=seek)


class _Clock:
    """Frame index <-> presentation timestamp for a constant frame rate, in integers:
    timestamp = first_pts + index / (time_base * rate)."""

    def __init__(self, first_pts: int, time_base: Fraction, rate: Fraction):
        scale = Fraction(time_base) * rate  # frames per timestamp unit
        self.first_pts, self.num, self.den = first_pts, scale.numerator, scale.denominator

    def index(self, pts: int | None) -> int | None:
        """The frame index a timestamp stands for, or None if it is not (near) a whole frame."""
        if pts is None:
            return None
        scaled = (pts - self.first_pts) * self.num  # the index times den
        index = (2 * scaled + self.den) // (2 * self.den)
        return index if abs(scaled - index * self.den) <= _PTS_TOLERANCE * self.den else None

    def pts(self, index: int) -> int:
        """The latest timestamp at or before frame `index`'s."""
        return self.first_pts + index * self.den // self.num


def _packet_order(times: list[int], clock: _Clock, complete: bool) -> str | None:
    """How the packets' timestamps number the frames: "presentation" (frames 0, 1, 2, ..., in any
    decoding order), "decoding" (the same, but already in order as they come: AVI, whose
    timestamps are decoding times; also any file without B-frames) or None (gaps, fractions)."""
    indices = [clock.index(pts) for pts in times]
    if None in indices:
        return None
    ordered = sorted(indices)
    if ordered != list(range(ordered[0], ordered[0] + len(ordered))) or (complete and ordered[0] != 0):
        return None
    return "decoding" if indices == ordered else "presentation"


def _tail_check(container, stream, clock: _Clock, header: int) -> tuple[int, str] | None:
    """(header, order) when the packets from the last keyframe on are whole, consecutive frames
    ending at frame header-1; None when they are not (or the seek fails)."""
    try:
        container.seek(clock.pts(header - 1), stream=stream, backward=True)
        times = [packet.pts for packet in container.demux(stream) if _counts(packet)]
    except Exception:
        return None
    if not times or None in times:
        return None
    order = _packet_order(times, clock, complete=False)
    if order is None or max(clock.index(pts) for pts in times) != header - 1:
        return None
    return header, order


def _counts(packet) -> bool:
    """Whether a demuxed packet is a frame of the video (not a flush, discarded or cut-off packet)."""
    return bool(packet.size) and not packet.is_discard and not packet.is_corrupt


def _count_packets(source, clock: _Clock | None) -> tuple[int, str | None]:
    """Count the frames by their packets, read up to the end or to the first damaged packet.

    When the packets' timestamps are the frame indices 0, 1, 2, ... the file can be seeked. A file
    cut off or damaged part way keeps the frames numbered without a gap from 0 (those whose packets
    all came before the damage). Otherwise (variable frame rate, no timestamps) every packet
    counts and the file is read from its start."""
    with _open(source) as container:
        stream = _video_stream(container)
        times, damaged = [], False
        try:
            for packet in container.demux(stream):
                if packet.is_corrupt:
                    damaged = True
                    break
                if _counts(packet):
                    times.append(packet.pts)
        except Exception:  # a truncated or damaged end: the frames before it still count
            damaged = True
    if clock is None or not times or None in times:
        return len(times), None
    order = _packet_order(times, clock, complete=True)
    if order is not None:
        return len(times), order
    if not damaged:
        return len(times), None  # gaps in an intact file: a variable frame rate
    indices = [clock.index(pts) for pts in times]
    frames = 0
    while frames in indices:
        frames += 1
    kept = [i for i in indices if i is not None and i < frames]
    return frames, (None if not frames else "decoding" if kept == sorted(kept) else "presentation")


def _probe_gif(source) -> VideoInfo:
    import imageio.v2 as imageio

    try:
        with imageio.get_reader(_rewind(source), format="GIF-PIL") as reader:
            frames = reader.get_length()
            first = as_rgb(np.asarray(reader.get_data(0)))
            duration = reader.get_meta_data(0).get("duration") or 0
    except Exception as exc:
        raise ValueError(reason(exc)) from exc
    if not frames or frames == float("inf"):
        raise ValueError("no frames")
    return VideoInfo(frames=int(frames), width=first.shape[1], height=first.shape[0],
                     fps=round(1000 / duration, 3) if duration else None)


# -- reading frames ----------------------------------------------------------------------------------
def read_frames(source, indices: list[int], *, name: str = "", info: VideoInfo | None = None) -> list[np.ndarray]:
    """The frames at `indices` (sorted, distinct) of a video file as uint8 [H, W, 3].

    With `info` from the index, a clip that starts after frame 0 is read by seeking (as info.seek
    says); otherwise the file is decoded from its start up to the last frame wanted. Raises
    ValueError (with the reason) for a file that cannot be read."""
    if not indices:
        return []
    try:
        if is_gif(name):
            frames = _read_gif(source, indices)
        else:
            frames = None
            if info is not None and info.seek and info.first_pts is not None and indices[0] > 0:
                try:
                    frames = _read_seeking(source, indices, info.first_pts, info.seek == "count")
                except _Unseekable:
                    frames = None
            if frames is None:
                frames = _read_from_start(source, indices)
    except Exception as exc:  # FFmpeg's errors (some are ValueErrors) and I/O errors, by their message
        raise ValueError(reason(exc)) from exc
    missing = [i for i in indices if i not in frames]
    if missing:
        if any(i > missing[0] for i in frames):
            raise ValueError(f"frame {missing[0]} could not be decoded")
        raise ValueError(f"the video ended before frame {missing[0]}")
    return [frames[i] for i in indices]


def _read_from_start(source, indices: list[int]) -> dict[int, np.ndarray]:
    wanted, frames = set(indices), {}
    with _open(source) as container:
        stream = _video_stream(container)
        rgb = _ToRGB(stream, _set_threads(stream))
        for index, frame in enumerate(_decoded(container, stream)):
            if index in wanted:
                frames[index] = rgb(frame)
            if index >= indices[-1]:
                break
    return frames


def _read_seeking(source, indices: list[int], first_pts: int, count: bool) -> dict[int, np.ndarray]:
    """Seek to the keyframe before the clip and decode forward, numbering frames by their
    timestamps (or, with `count`, the keyframe by its timestamp and the rest by counting).
    _Unseekable when the timestamps do not behave as the index found."""
    wanted, first, last = set(indices), indices[0], indices[-1]
    with _open(source) as container:
        stream = _video_stream(container)
        threads = _set_threads(stream)
        rate = _rate(stream)
        if not rate or not stream.time_base:
            raise _Unseekable
        clock, rgb = _Clock(first_pts, stream.time_base, rate), _ToRGB(stream, threads)
        for back in _SEEK_BACK:
            container.seek(clock.pts(max(0, first - back)), stream=stream, backward=True)
            frames, previous = {}, None
            # a single-threaded decoder (as in DataLoader workers) skips what the clip does not need
            skip = clock.pts(first) if not count and stream.codec_context.thread_count == 1 else None
            for frame in _decoded(container, stream, skip_before=skip):
                if previous is None or not count:
                    index = clock.index(frame.pts)
                    if index is None or (previous is not None and index <= previous):
                        raise _Unseekable
                    if previous is None and index > first:
                        break  # landed after the clip's start: aim further back
                else:
                    index = previous + 1
                previous = index
                if index in wanted:
                    frames[index] = rgb(frame)
                if index >= last:
                    return frames
            else:
                return frames  # the end of the file: read_frames names the missing frame
            if first - back <= 0:
                break
    raise _Unseekable


def _read_gif(source, indices: list[int]) -> dict[int, np.ndarray]:
    import imageio.v2 as imageio

    wanted, frames = set(indices), {}
    with imageio.get_reader(_rewind(source), format="GIF-PIL") as reader:
        for index, frame in enumerate(reader):
            if index in wanted:
                frames[index] = as_rgb(np.asarray(frame))
            if index >= indices[-1]:
                break
    return frames
