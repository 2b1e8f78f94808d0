"""Video datasets: frame folders, video files, zips; clip sampling; bad datasets."""
from __future__ import annotations

import zipfile
from pathlib import Path

import imageio
import numpy as np
import pytest
import torch
from PIL import Image

from mocohd_cli.data.clips import ClipBatchSampler, VideoClips, clip_loader, frames_to_clip, natural_key
from mocohd_cli.data.frames import frame_batch, load_frames
from mocohd_cli.infra.errors import MocohdError


def ramp_video(n: int, h: int = 20, w: int = 28) -> np.ndarray:
    """Frame i is a flat grey of level 10 * i: the clip's values tell which frames were read."""
    levels = (np.arange(n) * 10).astype(np.uint8)
    return np.broadcast_to(levels[:, None, None, None], (n, h, w, 3)).copy()


def write_frame_folder(folder: Path, frames: np.ndarray, suffix: str = ".png") -> None:
    folder.mkdir(parents=True)
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"img_{i}{suffix}")  # unpadded: natural order matters


def level_of(clip: torch.Tensor) -> list[int]:
    """Mean grey level of each frame of a [T, 3, H, W] clip in [-1, 1], back in 0..255."""
    return [round(v) for v in ((clip.mean(dim=(1, 2, 3)) + 1) * 127.5).tolist()]


def test_natural_order():
    assert sorted(["img_10.png", "img_2.png", "img_1.png"], key=natural_key) == ["img_1.png", "img_2.png",
                                                                                 "img_10.png"]


def test_frame_folders_clips_take_every_time_step(tmp_path):
    write_frame_folder(tmp_path / "a", ramp_video(12))
    write_frame_folder(tmp_path / "b", ramp_video(14), suffix=".jpg")
    data = VideoClips(tmp_path, n_frames=4, time_step=2, size=16, seed=3)
    assert len(data) == 2 and data.report.videos == 2
    clip = data[(0, 5)]
    assert clip.shape == (4, 3, 16, 16) and clip.dtype == torch.float32
    assert clip.min() >= -1 and clip.max() <= 1
    start = data.clip_start(0, 5)
    assert level_of(clip) == [10 * (start + 2 * k) for k in range(4)]
    # the clip start depends only on (seed, position)
    assert torch.equal(data[(0, 5)], clip)
    starts = {data.clip_start(0, p) for p in range(40)}
    assert len(starts) > 1 and max(starts) <= 12 - 7


def test_centre_crop_keeps_the_middle(tmp_path):
    frames = np.zeros((3, 10, 30, 3), np.uint8)
    frames[:, :, 10:20] = 255  # a white centre square in a wide frame
    clip = frames_to_clip(frames, 10)
    assert clip.shape == (3, 3, 10, 10) and torch.all(clip == 1.0)


@pytest.mark.parametrize("suffix", [".mp4", ".gif", ".avi", ".webm"])
def test_video_files(tmp_path, suffix):
    frames = ramp_video(10, 16, 16)
    kwargs = {"duration": 0.1} if suffix == ".gif" else {"fps": 8, "macro_block_size": 8, "quality": 10}
    if suffix == ".webm":
        kwargs["codec"] = "libvpx"
    imageio.mimwrite(tmp_path / f"v{suffix}", frames, **kwargs)
    data = VideoClips(tmp_path, n_frames=3, time_step=3, size=8)
    clip = data[(0, 0)]
    assert clip.shape == (3, 3, 8, 8)
    start = data.clip_start(0, 0)
    expected = [10 * (start + 3 * k) for k in range(3)]
    assert all(abs(a - b) <= 3 for a, b in zip(level_of(clip), expected))  # lossy codecs


def test_zip_of_frame_folders_and_videos(tmp_path):
    src = tmp_path / "src"
    write_frame_folder(src / "clip1", ramp_video(8))
    imageio.mimwrite(src / "v.gif", ramp_video(9, 16, 16), duration=0.1)
    archive = tmp_path / "data.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for file in src.rglob("*"):
            zf.write(file, file.relative_to(src).as_posix())
    data = VideoClips(archive, n_frames=4, time_step=2, size=8)
    assert [e.name for e in data.entries] == ["clip1", "v.gif"]
    assert data[(1, 2)].shape == (4, 3, 8, 8)
    batches = clip_loader(data, 2, workers=1)  # decoded in a worker process, zip reopened there
    assert next(batches).shape == (2, 4, 3, 8, 8)


def test_short_and_corrupt_videos_are_skipped_and_reported(tmp_path):
    write_frame_folder(tmp_path / "long", ramp_video(10))
    write_frame_folder(tmp_path / "short", ramp_video(3))
    (tmp_path / "broken.mp4").write_bytes(b"not a video at all")
    (tmp_path / "bad_frames").mkdir()
    for i in range(10):
        (tmp_path / "bad_frames" / f"img_{i}.png").write_bytes(b"nope")
    data = VideoClips(tmp_path, n_frames=4, time_step=2, size=8)
    assert [e.name for e in data.entries] == ["long"]
    assert data.report.too_short == ["short"]
    corrupt = dict(data.report.corrupt)
    assert set(corrupt) == {"broken.mp4", "bad_frames"}
    assert "img_0.png" in corrupt["bad_frames"]
    assert "too short" in data.report.summary() and "broken.mp4" in data.report.summary()


def test_corrupt_frame_found_while_loading_is_named_and_replaced(tmp_path, caplog):
    write_frame_folder(tmp_path / "a", ramp_video(6))
    write_frame_folder(tmp_path / "b", ramp_video(6))
    for i in range(1, 6):  # the index checks only the first frame
        (tmp_path / "a" / f"img_{i}.png").write_bytes(b"broken")
    data = VideoClips(tmp_path, n_frames=3, time_step=1, size=8)
    clip = data[(0, 0)]
    assert clip.shape == (3, 3, 8, 8)
    assert any("img_" in record.getMessage() for record in caplog.records)  # logged as a warning


@pytest.mark.parametrize("case", ["missing", "empty", "all_short", "all_corrupt", "not_zip", "bad_zip", "file"])
def test_bad_datasets_give_one_clear_error(tmp_path, case):
    root = tmp_path / "data"
    expected = {"missing": "not found", "empty": "no videos found", "all_short": "shorter than",
                "all_corrupt": "unreadable", "not_zip": "folder or a .zip", "bad_zip": "not a readable zip",
                "file": "no videos found"}[case]
    if case == "empty":
        root.mkdir()
        (root / "notes.txt").write_text("hello")
    elif case == "all_short":
        write_frame_folder(root / "a", ramp_video(3))
    elif case == "all_corrupt":
        root.mkdir()
        (root / "x.mp4").write_bytes(b"junk")
    elif case == "not_zip":
        root = tmp_path / "data.tar"
        root.write_bytes(b"x")
    elif case == "bad_zip":
        root = tmp_path / "data.zip"
        root.write_bytes(b"PK not really")
    elif case == "file":
        root = tmp_path / "empty.zip"
        zipfile.ZipFile(root, "w").close()
    with pytest.raises(MocohdError) as info:
        VideoClips(root, n_frames=4, time_step=2, size=8)
    assert expected in str(info.value)
    assert info.value.path == root and info.value.fix


def test_sampler_stream_is_resumable_and_sharded():
    full = ClipBatchSampler(5, 2, seed=1)
    stream = iter(full)
    batches = [next(stream) for _ in range(6)]
    resumed = iter(ClipBatchSampler(5, 2, seed=1, start_batch=3))
    assert [next(resumed) for _ in range(3)] == batches[3:]
    # every epoch visits every video once
    flat = [i for batch in batches for i, _ in batch]
    assert sorted(flat[:5]) == list(range(5)) and sorted(flat[5:10]) == list(range(5))
    # two ranks split each global batch: together they equal the single-process stream of batch 2B
    r0 = ClipBatchSampler(5, 2, seed=1, rank=0, world_size=2).batch(1)
    r1 = ClipBatchSampler(5, 2, seed=1, rank=1, world_size=2).batch(1)
    assert r0 + r1 == ClipBatchSampler(5, 4, seed=1).batch(1)


# -- single frames (mocohd_cli.data.frames): what image generators are trained on -------------------
def frame_levels(frames: torch.Tensor) -> list[int]:
    """Mean level of each uint8 frame [N, 3, H, W]."""
    return [round(v) for v in frames.float().mean(dim=(1, 2, 3)).tolist()]


def tinted_ramp(n: int, h: int = 16, w: int = 16) -> np.ndarray:
    """ramp_video with a constant red channel: frame i has mean level (200 + 20 * i) / 3.

    (A GIF whose first frame is grey reads back as a one-channel frame: kept out of these tests.)"""
    video = ramp_video(n, h, w)
    video[..., 0] = 200
    return video


def tinted_levels(n: int) -> list[float]:
    return [(200 + 20 * i) / 3 for i in range(n)]


def test_load_frames_from_video_files(tmp_path):
    root = tmp_path / "videos"
    root.mkdir()
    imageio.mimwrite(root / "a.mp4", ramp_video(10, 16, 16), fps=8, macro_block_size=8, quality=10)
    imageio.mimwrite(root / "b.gif", tinted_ramp(6), duration=0.1)
    frames = load_frames(root, 8)
    assert frames.shape == (16, 3, 8, 8) and frames.dtype == torch.uint8
    expected = [10 * i for i in range(10)] + tinted_levels(6)  # every frame, videos in name order
    assert all(abs(a - b) <= 3 for a, b in zip(frame_levels(frames), expected))  # lossy codecs
    subset = load_frames(root, 8, max_images=4)  # evenly spaced: items 0, 5, 10, 15
    assert all(abs(a - b) <= 3 for a, b in zip(frame_levels(subset), [0, 50, expected[10], expected[15]]))


def test_load_frames_from_a_zip(tmp_path):
    src = tmp_path / "src"
    write_frame_folder(src / "clip1", ramp_video(5))  # 20 x 28: centre-cropped to a square
    imageio.mimwrite(src / "v.gif", tinted_ramp(4), duration=0.1)
    archive = tmp_path / "data.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for file in src.rglob("*"):
            zf.write(file, file.relative_to(src).as_posix())
    frames = load_frames(archive, 8)
    assert frames.shape == (9, 3, 8, 8) and frames.dtype == torch.uint8
    levels = frame_levels(frames)
    assert levels[:5] == [0, 10, 20, 30, 40]  # PNG frames: exact
    assert all(abs(a - b) <= 3 for a, b in zip(levels[5:], tinted_levels(4)))


def test_load_frames_from_a_generated_dataset_and_bad_input(tmp_path):
    from mocohd_cli.data.domains import make_dataset

    make_dataset("robots", tmp_path / "d", videos=2, frames=3, size=32)
    frames = load_frames(tmp_path / "d", 16)
    assert frames.shape == (6, 3, 16, 16) and frames.dtype == torch.uint8
    assert load_frames(tmp_path / "d", 16, max_images=4).shape[0] == 4
    (tmp_path / "empty").mkdir()
    with pytest.raises(MocohdError, match="no images"):
        load_frames(tmp_path / "empty", 16)
    with pytest.raises(MocohdError, match="not found"):
        load_frames(tmp_path / "missing", 16)


def test_frame_batches_are_seeded_in_range_and_mirrored():
    frames = torch.zeros(4, 3, 2, 2, dtype=torch.uint8)
    frames[:, :, :, 0] = 255  # white left column
    batch = frame_batch(frames, 64, torch.Generator().manual_seed(0), torch.device("cpu"), mirror=True)
    assert batch.shape == (64, 3, 2, 2) and batch.min() == -1 and batch.max() == 1
    mirrored = batch[:, 0, 0, 1] == 1
    assert 16 < mirrored.sum() < 48
    again = frame_batch(frames, 64, torch.Generator().manual_seed(0), torch.device("cpu"), mirror=True)
    assert torch.equal(batch, again)
    plain = frame_batch(frames, 64, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert (plain[:, 0, 0, 0] == 1).all()


def test_grey_gif_frames_become_rgb(tmp_path):
    """A GIF whose frames are pure grey decodes them as [H, W]; clips still get three channels."""
    import imageio.v2 as imageio

    root = tmp_path / "grey"
    root.mkdir()
    frames = [np.full((16, 16, 3), 40 * k, np.uint8) for k in range(5)]
    imageio.mimsave(root / "v.gif", frames, format="GIF", duration=0.1)
    clip = VideoClips(root, n_frames=5, time_step=1, size=16)[(0, 0)]  # from frame 0, which decodes as [H, W]
    assert clip.shape == (5, 3, 16, 16)
    assert torch.equal(clip[:, 0], clip[:, 1]) and torch.equal(clip[:, 1], clip[:, 2])


# -- in-process decoding (PyAV): the same pixels as imageio's readers, seeking to late clips ---------
def moving_video(n: int, side: int = 32) -> np.ndarray:
    """Frames that all differ (a moving diagonal ramp plus fixed noise): a frame read from the wrong
    position cannot match."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:side, 0:side]
    t = np.arange(n)[:, None, None]
    video = np.stack([(4 * xx + 3 * t) % 256, (4 * yy + t) % 256, (2 * (xx + yy) + 5 * t) % 256], axis=-1)
    return (video + rng.integers(0, 24, video.shape)).clip(0, 255).astype(np.uint8)


def imageio_frames(path: Path) -> list[np.ndarray]:
    """Every frame as the reader before PyAV gave it (ffmpeg subprocess; Pillow for GIFs)."""
    import imageio.v2 as imageio2

    from mocohd_cli.data.clips import as_rgb

    with imageio2.get_reader(path, format="GIF-PIL" if path.suffix == ".gif" else "FFMPEG") as reader:
        return [as_rgb(np.asarray(frame)) for frame in reader]


@pytest.fixture(scope="module")
def long_videos(tmp_path_factory):
    """A 300-frame mp4 (keyframes at 0 and 250 and B-frames: libx264's defaults), a GIF, and a zip
    holding the mp4, each with the frames imageio reads from it."""
    root = tmp_path_factory.mktemp("long")
    (root / "videos").mkdir()
    mp4, gif = root / "videos" / "long.mp4", root / "videos" / "anim.gif"
    imageio.mimwrite(mp4, moving_video(300), fps=25, macro_block_size=8)
    imageio.mimwrite(gif, moving_video(24), duration=40, loop=0)
    with zipfile.ZipFile(root / "videos.zip", "w") as zf:
        zf.write(mp4, "clips/long.mp4")
    return root, {"long.mp4": imageio_frames(mp4), "anim.gif": imageio_frames(gif)}


@pytest.mark.parametrize("where", ["videos", "videos.zip"])
def test_pyav_reads_the_same_pixels_as_imageio_including_late_clips(long_videos, monkeypatch, where):
    from mocohd_cli.data import decode

    root, expected = long_videos
    data = VideoClips(root / where, n_frames=4, time_step=3, size=32)
    by_name = {Path(e.name).name: e for e in data.entries}
    assert by_name["long.mp4"].length == 300
    reference = expected["long.mp4"]
    entry = by_name["long.mp4"]
    assert entry.info is not None and entry.info.first_pts is not None  # its timestamps number its frames

    def no_reading_from_the_start(*args, **kwargs):
        raise AssertionError("a late clip was read from the start of the file")

    monkeypatch.setattr(decode, "_read_from_start", no_reading_from_the_start)
    for start in (1, 100, 246, 247, 248, 249, 250, 251, 280, 290):  # around the keyframe at 250 and the end
        indices = list(range(start, start + 10, 3))
        frames = clips_module.decode_video_frames(data.storage, entry.file, indices, info=entry.info)
        for i, frame in zip(indices, frames):
            assert np.array_equal(frame, reference[i]), f"frame {i} (clip from {start})"
    monkeypatch.undo()
    # without the index's info the file is read from its start: the same frames
    assert np.array_equal(clips_module.decode_video_frames(data.storage, entry.file, [297])[0], reference[297])
    if "anim.gif" in by_name:
        gif = by_name["anim.gif"]
        frames = clips_module.decode_video_frames(data.storage, gif.file, [0, 7, 23], info=gif.info)
        assert all(np.array_equal(f, expected["anim.gif"][i]) for f, i in zip(frames, [0, 7, 23]))
    # a whole training clip: the frames of its seeded start, centre-cropped and resized as frames_to_clip does
    index = data.entries.index(entry)
    position = next(p for p in range(100) if data.clip_start(index, p) > 200)
    start = data.clip_start(index, position)
    clip = data[(index, position)]
    assert torch.equal(clip, frames_to_clip(np.stack(reference[start:start + 10:3]), 32))


import mocohd_cli.data.clips as clips_module  # noqa: E402  (the module, for decode_video_frames)


@pytest.mark.parametrize("suffix", [".webm", ".mkv", ".avi", ".mov"])
def test_frame_counts_without_a_header_count_are_counted(tmp_path, suffix):
    """webm and mkv headers carry no frame count: the packets are counted (the same number
    ffmpeg decodes); other containers' counts come from their headers."""
    kwargs = {"fps": 10, "macro_block_size": 8}
    if suffix == ".webm":
        kwargs["codec"] = "libvpx"
    imageio.mimwrite(tmp_path / f"v{suffix}", moving_video(37), **kwargs)
    data = VideoClips(tmp_path, n_frames=2, time_step=1, size=16)
    assert data.entries[0].length == 37 == len(imageio_frames(tmp_path / f"v{suffix}"))
    last = clips_module.decode_video_frames(data.storage, data.entries[0].file, [35, 36], info=data.entries[0].info)
    reference = imageio_frames(tmp_path / f"v{suffix}")
    assert np.array_equal(last[0], reference[35]) and np.array_equal(last[1], reference[36])


def test_frames_are_resized_with_lanczos():
    from PIL import Image

    frames = moving_video(2, 48)[:, :, :40]  # 48 x 40: centre crop to 40 x 40, then 16 x 16
    clip = frames_to_clip(frames, 16)
    crop = frames[:, 4:44]
    expected = np.stack([np.asarray(Image.fromarray(f).resize((16, 16), Image.Resampling.LANCZOS)) for f in crop])
    assert torch.equal(clip, torch.from_numpy(expected).permute(0, 3, 1, 2).float() / 127.5 - 1)


@pytest.mark.timeout(60)
def test_truncated_and_damaged_videos_are_named_and_skipped(tmp_path, capsys):
    whole = tmp_path / "whole.mp4"
    imageio.mimwrite(whole, moving_video(60), fps=25, macro_block_size=8)
    faststart = tmp_path / "faststart.mp4"  # the header first: cutting it keeps a readable start
    imageio.mimwrite(faststart, moving_video(60, 64), fps=25, macro_block_size=8, quality=9,
                     output_params=["-movflags", "+faststart"])
    root = tmp_path / "data"
    root.mkdir()
    data_bytes = whole.read_bytes()
    (root / "a_whole.mp4").write_bytes(data_bytes)
    (root / "cut_end.mp4").write_bytes(data_bytes[: len(data_bytes) // 2])  # its index (moov) is gone
    (root / "empty.mp4").write_bytes(b"")
    (root / "junk.webm").write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    (root / "zeros.avi").write_bytes(bytes(5000))
    fast = faststart.read_bytes()
    (root / "cut_faststart.mp4").write_bytes(fast[: int(len(fast) * 0.6)])
    damaged = bytearray(fast)
    rng = np.random.default_rng(1)
    for i in rng.integers(len(fast) // 2, len(fast), 40):  # damaged frames in its second half
        damaged[i] = rng.integers(256)
    (root / "damaged.mp4").write_bytes(bytes(damaged))
    data = VideoClips(root, n_frames=4, time_step=1, size=16)
    corrupt = dict(data.report.corrupt)
    assert set(corrupt) == {"cut_end.mp4", "empty.mp4", "junk.webm", "zeros.avi"}
    assert corrupt["empty.mp4"] == "empty file" and corrupt["junk.webm"] == "Invalid data found when processing input"
    assert all(corrupt.values()) and data.report.summary().count("unreadable") == 1
    lengths = {e.name: e.length for e in data.entries}
    assert lengths["a_whole.mp4"] == 60
    assert 4 <= lengths["cut_faststart.mp4"] < 60  # the frames before the cut
    # every clip of every kept video either reads or is named and replaced by the next video
    for i in range(len(data)):
        for position in range(0, 40, 7):
            assert data[(i, position)].shape == (4, 3, 16, 16)
    capsys.readouterr()
