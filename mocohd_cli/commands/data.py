"""`mocohd data make|list`: procedural example video datasets with their generating factors;
`mocohd data inspect`: the (cached) index of any video dataset."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from rich.console import Console
from rich.markup import escape
from rich.table import Table
import typer

from ..app import PANEL_MODELS, app
from ..data.clips import clip_span
from ..data.domains import DOMAINS, make_dataset
from ..data.index import scan
from ..data.shards import ShardReport, expand_shards, is_shard_spec, shard_samples, write_shards
from ..data.storage import open_storage
from ..infra.console import console
from ..infra.threads import threads_typer_option

data_app = typer.Typer(help="Procedural example video datasets (cartoon faces, robots, sky); inspect a dataset.",
                       no_args_is_help=True)
app.add_typer(data_app, name="data", rich_help_panel=PANEL_MODELS)


@data_app.command("list")
def list_domains() -> None:
    """List the procedural domains `mocohd data make` can render."""
    table = Table(title="mocohd procedural domains")
    table.add_column("name")
    table.add_column("description")
    for domain in DOMAINS.values():
        table.add_row(domain.name, domain.description)
    Console(width=140).print(table)


@data_app.command("make")
def make(
    name: str = typer.Argument(..., metavar="NAME", help="Domain name (see `mocohd data list`)."),
    out: Path = typer.Option(..., metavar="DIR",
                             help="Output folder: OUT/video_0000/img_0000.png ... and factors.json per video."),
    videos: int = typer.Option(64, min=1, help="Number of videos."),
    frames: int = typer.Option(32, min=1, help="Frames per video."),
    size: int = typer.Option(64, min=8, help="Frame side in pixels."),
    seed: int = typer.Option(0, help="Random seed: the same seed gives the same videos."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Write into a non-empty --out folder."),
    threads: Optional[int] = threads_typer_option(),
) -> None:
    """Render a procedural video dataset, recording each video's generating factors.

    Example:

      mocohd data make faces --out data/faces --videos 256 --frames 64
    """
    folder = make_dataset(name, out, videos=videos, frames=frames, size=size, seed=seed, overwrite=overwrite)
    console.print(f"wrote {videos} videos x {frames} frames of {name!r} at {size} px to {folder}")


@data_app.command("inspect")
def inspect(
    data: str = typer.Argument(..., metavar="DATA", help="A dataset: a folder (or .zip) of frame folders or video files, or tar "
                                         "shards ('DIR/NAME-{000000..000009}.tar', streamed once)."),
    frames: int | None = typer.Option(None, min=1, help="Also count the videos too short for clips of this "
                                                        "many frames (with --time-step)."),
    time_step: int = typer.Option(1, min=1, help="Frame step of those clips."),
    cache: bool = typer.Option(True, help="Use and update the index cache (--no-cache reads every file)."),
) -> None:
    """Index a video dataset (cached) and print it: videos, frames, fps, resolutions, skipped files.

    Example:

      mocohd data inspect data/faces --frames 16 --time-step 2
    """
    if is_shard_spec(data):
        inspect_shards(data, frames, time_step)
        return
    data = Path(data)
    index = scan(open_storage(data, given_as="`mocohd data inspect DATA`"), cache=cache)
    usable, skipped = index.usable, index.skipped
    out = Console(width=140)
    n_files = sum(r.kind == "video" for r in usable)
    lengths = sorted(r.frames for r in usable)
    text = (f"{len(usable)} videos in {escape(str(data))} ({n_files} video files, {len(usable) - n_files} frame folders), "
            f"{sum(lengths)} frames")
    if lengths:
        text += f" (per video: min {lengths[0]}, median {lengths[len(lengths) // 2]}, max {lengths[-1]})"
    out.print(text)
    where = f"cached in {index.cache}" if index.cache else "not cached"
    if index.ignored:
        count = sum(index.ignored.values())
        kinds = ", ".join(f"{n} {suffix or 'without suffix'}" for suffix, n in
                          sorted(index.ignored.items(), key=lambda kv: (-kv[1], kv[0])))
        out.print(f"ignored {count} file{'s' if count != 1 else ''} that {'are' if count != 1 else 'is'} neither "
                  f"images nor videos ({escape(kinds)}), e.g. {escape(str(index.ignored_example))}")
    out.print(f"index: {index.read} files read now, {len(index.records) - index.read} from the cache "
              f"({index.seconds:.2f} s); {escape(where)}")
    if frames is not None:
        span = clip_span(frames, time_step)
        short = [r for r in usable if r.frames < span]
        out.print(f"{len(short)} too short for {frames} frames every {time_step} ({span} frames)"
                  + (f", e.g. {escape(short[0].name)}" if short else ""))

    def histogram(title: str, column: str, counts, label) -> None:
        table = Table(title=title)
        table.add_column(column)
        table.add_column("videos", justify="right")
        for key, count in counts:
            table.add_row(label(key), str(count))
        out.print(table)

    if usable:
        histogram("frames per video", "frames", sorted(index.length_histogram().items()),
                  lambda low: "1-15" if low == 1 else f"{low}-{2 * low - 1}")
        histogram("frame rate", "fps", sorted(index.fps_histogram().items(), key=lambda kv: (kv[0] is None, kv[0] or 0)),
                  lambda fps: "unknown (frame folders, GIFs without delays)" if fps is None else f"{fps:g}")
        histogram("resolution", "width x height", index.resolution_histogram().most_common(),
                  lambda wh: f"{wh[0]} x {wh[1]}")
    if skipped:
        table = Table(title=f"{len(skipped)} skipped (unreadable)")
        table.add_column("file")
        table.add_column("reason")
        for record in skipped:
            table.add_row(escape(record.name), escape(record.error))
        out.print(table)


def inspect_shards(spec: str, frames: int | None, time_step: int) -> None:
    """`mocohd data inspect` of tar shards: one streamed pass (nothing is cached), memory one sample."""
    urls = expand_shards(spec)
    report = ShardReport(spec=spec)
    lengths, kinds, unreadable = [], {"video files": 0, "frame sequences": 0}, []
    for video in shard_samples(urls, report):
        try:
            lengths.append(video.length())
        except ValueError as exc:
            unreadable.append(f"{video.url}: {video.name} ({exc})")
            continue
        kinds["video files" if video.file else "frame sequences"] += 1
    out = Console(width=140)
    lengths.sort()
    text = (f"{len(lengths)} videos in {len(urls)} shard{'s' if len(urls) != 1 else ''} {escape(spec)} "
            f"({kinds['video files']} video files, {kinds['frame sequences']} frame sequences), {sum(lengths)} frames")
    if lengths:
        text += f" (per video: min {lengths[0]}, median {lengths[len(lengths) // 2]}, max {lengths[-1]})"
    out.print(text)
    if report.empty:
        out.print(f"{report.empty} samples without an image or video member")
    if frames is not None:
        span = clip_span(frames, time_step)
        out.print(f"{sum(n < span for n in lengths)} too short for {frames} frames every {time_step} ({span} frames)")
    for line in unreadable[:10]:
        out.print(f"unreadable: {escape(line)}")
    if len(unreadable) > 10:
        out.print(f"... and {len(unreadable) - 10} more unreadable")


@data_app.command("shard")
def shard(
    src: str = typer.Argument(..., metavar="SRC", help="A dataset: a folder (or .zip) of frame folders or video files, or tar "
                                        "shards ('DIR/NAME-{000000..000009}.tar')."),
    out: Path = typer.Argument(..., metavar="OUT", help="Output folder: OUT/NAME-000000.tar, OUT/NAME-000001.tar, ..."),
    name: str = typer.Option("shard", metavar="NAME", help="The shards' name: OUT/NAME-000000.tar ..."),
    per_shard: Optional[int] = typer.Option(None, "--per-shard", min=1, help="At most this many videos a shard."),
    max_mb: Optional[float] = typer.Option(None, "--max-mb", min=0.001,
                                           help="At most about this many megabytes a shard (default 3,000)."),
) -> None:
    """Write a dataset as numbered webdataset tar shards (one sample a video: its file, or its frames).

    Example:

      mocohd data shard data/faces shards/ --name faces --per-shard 64
    """
    shards, videos = write_shards(src, out, name=name, per_shard=per_shard,
                                  max_bytes=None if max_mb is None else max_mb * 1e6)
    last = len(shards) - 1
    console.print(f"wrote {videos} videos to {len(shards)} shards: "
                  f"{escape(str(out / f'{name}-{{000000..{last:06d}}}.tar'))}")
