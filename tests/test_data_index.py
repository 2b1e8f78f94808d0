"""The dataset index cache: a second run reads nothing, a changed file is read again, zips are
keyed by their own size and time; `mocohd data inspect` prints it."""
from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import imageio
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from mocohd_cli.cli import app
from mocohd_cli.data import index as index_module
from mocohd_cli.data.clips import VideoClips
from mocohd_cli.data.index import cache_file, scan
from mocohd_cli.data.storage import open_storage


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MOCOHD_CACHE", str(tmp_path / "cache"))


def write_mp4(path: Path, n: int, fps: int = 25, side: int = 32) -> None:
    frames = (np.arange(n)[:, None, None, None] * 7 + np.zeros((1, side, side, 3))).astype(np.uint8)
    imageio.mimwrite(path, frames, fps=fps, macro_block_size=8)


def make_dataset(root: Path) -> Path:
    root.mkdir()
    write_mp4(root / "a.mp4", 20)
    write_mp4(root / "b.mp4", 30, fps=10)
    (root / "frames").mkdir()
    for i in range(12):
        Image.fromarray(np.full((24, 40, 3), i, np.uint8)).save(root / "frames" / f"img_{i}.png")
    (root / "broken.mp4").write_bytes(b"not a video")
    return root


def no_probing(*args, **kwargs):
    raise AssertionError("a file was read although the cache knows it")


def test_second_run_reads_only_new_and_changed_files(tmp_path, monkeypatch):
    root = make_dataset(tmp_path / "data")
    first = scan(open_storage(root))
    assert first.read == 4 and first.cache == cache_file(root)
    by_name = {r.name: r for r in first.records}
    assert (by_name["a.mp4"].frames, by_name["a.mp4"].fps, by_name["a.mp4"].width) == (20, 25.0, 32)
    assert (by_name["b.mp4"].frames, by_name["b.mp4"].fps) == (30, 10.0)
    assert (by_name["frames"].kind, by_name["frames"].frames, by_name["frames"].width, by_name["frames"].height) == \
        ("frames", 12, 40, 24)
    assert by_name["broken.mp4"].error and not by_name["a.mp4"].error
    saved = json.loads(cache_file(root).read_text())  # JSON, for this dataset
    assert saved["root"] == str(root.resolve()) and set(saved["entries"]) == set(by_name)

    with monkeypatch.context() as patch:
        patch.setattr(index_module, "probe_video", no_probing)
        patch.setattr(index_module, "decode_image", no_probing)
        again = scan(open_storage(root))
    assert again.read == 0 and again.records == first.records
    assert [r.files for r in again.records] == [r.files for r in first.records]

    write_mp4(root / "b.mp4", 40, fps=10)  # changed: read again
    os.utime(root / "b.mp4", ns=(1_000_000_000, 1_000_000_000))
    write_mp4(root / "broken.mp4", 8)  # repaired
    (root / "a.mp4").unlink()  # gone
    Image.fromarray(np.zeros((24, 40, 3), np.uint8)).save(root / "frames" / "img_12.png")  # one more frame
    third = scan(open_storage(root))
    assert third.read == 3
    by_name = {r.name: r for r in third.records}
    assert set(by_name) == {"b.mp4", "broken.mp4", "frames"}
    assert by_name["b.mp4"].frames == 40 and by_name["broken.mp4"].frames == 8 and not by_name["broken.mp4"].error
    assert by_name["frames"].frames == 13
    assert set(json.loads(cache_file(root).read_text())["entries"]) == set(by_name)


def test_video_clips_use_the_cache(tmp_path, monkeypatch):
    root = make_dataset(tmp_path / "data")
    data = VideoClips(root, n_frames=4, time_step=2, size=16)
    monkeypatch.setattr(index_module, "probe_video", no_probing)
    again = VideoClips(root, n_frames=4, time_step=2, size=16)
    assert again.entries == data.entries and again.report.corrupt == data.report.corrupt
    assert again[(1, 3)].shape == (4, 3, 16, 16)


def test_a_zip_is_keyed_by_its_size_and_time(tmp_path, monkeypatch):
    src = tmp_path / "src"
    src.mkdir()
    write_mp4(src / "a.mp4", 20)
    write_mp4(src / "b.mp4", 25)
    archive = tmp_path / "data.zip"
    with zipfile.ZipFile(archive, "w") as zf:  # a.mp4 stored (read in place), b.mp4 deflated
        zf.write(src / "a.mp4", "v/a.mp4", compress_type=zipfile.ZIP_STORED)
        zf.write(src / "b.mp4", "v/b.mp4", compress_type=zipfile.ZIP_DEFLATED)
    first = scan(open_storage(archive))
    assert first.read == 2 and [(r.name, r.frames) for r in first.records] == [("v/a.mp4", 20), ("v/b.mp4", 25)]
    assert json.loads(cache_file(archive).read_text())["signature"] == [archive.stat().st_size,
                                                                         archive.stat().st_mtime_ns]
    with monkeypatch.context() as patch:
        patch.setattr(index_module, "probe_video", no_probing)
        assert scan(open_storage(archive)).read == 0
    write_mp4(src / "c.mp4", 9)
    with zipfile.ZipFile(archive, "a") as zf:  # the zip changes: its unchanged members are not read again
        zf.write(src / "c.mp4", "v/c.mp4")
    grown = scan(open_storage(archive))
    assert grown.read == 1 and [r.frames for r in grown.records] == [20, 25, 9]


def test_a_broken_or_unwritable_cache_is_not_an_error(tmp_path, monkeypatch):
    root = make_dataset(tmp_path / "data")
    path = cache_file(root)
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    result = scan(open_storage(root))
    assert result.read == 4 and json.loads(path.read_text())["entries"]
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache folder would be")
    monkeypatch.setenv("MOCOHD_CACHE", str(blocked))
    result = scan(open_storage(root))
    assert result.read == 4 and result.cache is None
    assert len(result.usable) == 3
    uncached = scan(open_storage(root), cache=False)
    assert uncached.read == 4 and uncached.cache is None


def test_inspect_prints_the_index(tmp_path):
    root = make_dataset(tmp_path / "data")
    runner = CliRunner()
    result = runner.invoke(app, ["data", "inspect", str(root), "--frames", "8", "--time-step", "3"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "3 videos" in out and "2 video files, 1 frame folders" in out and "62 frames" in out
    assert "4 files read now, 0 from the cache" in out
    assert "frame rate" in out and "25" in out and "10" in out
    assert "32 x 32" in out and "40 x 24" in out
    assert "1 skipped" in out and "broken.mp4" in out and "Invalid data" in out
    assert "2 too short for 8 frames every 3 (22 frames), e.g. a.mp4" in out  # 20 and 12 frames
    again = runner.invoke(app, ["data", "inspect", str(root)])
    assert again.exit_code == 0 and "0 files read now, 4 from the cache" in again.output
