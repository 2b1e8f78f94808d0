"""Procedural video domains: deterministic, written in the frame-folder layout with factors that
really vary over time."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from mocohd_cli.data.domains import DOMAINS, get_domain, make_dataset, read_factors
from mocohd_cli.infra.errors import MocohdError


@pytest.mark.parametrize("name", sorted(DOMAINS))
def test_same_seed_same_video_other_seed_other_video(name):
    domain = get_domain(name)
    a, b = domain.video(3, 0, 6, 32), domain.video(3, 0, 6, 32)
    assert a.frames.shape == (6, 32, 32, 3) and a.frames.dtype == np.uint8
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_equal(a.content, b.content)
    np.testing.assert_equal(a.motion, b.motion)
    other_seed = domain.video(4, 0, 6, 32)
    assert np.abs(a.frames.astype(int) - other_seed.frames.astype(int)).mean() > 1.0
    other_index = domain.video(3, 1, 6, 32)  # the index is a seed of its own too
    assert np.abs(a.frames.astype(int) - other_index.frames.astype(int)).mean() > 1.0


@pytest.mark.parametrize("name", sorted(DOMAINS))
def test_a_video_does_not_depend_on_how_many_are_rendered(name, tmp_path):
    """Video i of a dataset is the same in a dataset of 2 videos and of 5, and is what
    `Domain.video(seed, i, ...)` renders on its own."""
    small = make_dataset(name, tmp_path / "small", videos=2, frames=3, size=16, seed=11)
    large = make_dataset(name, tmp_path / "large", videos=5, frames=3, size=16, seed=11)
    alone = get_domain(name).video(11, 1, 3, 16).frames

    def frames(root):
        return np.stack([np.asarray(Image.open(root / "video_0001" / f"img_{t:04d}.png")) for t in range(3)])

    np.testing.assert_array_equal(frames(small), alone)
    np.testing.assert_array_equal(frames(large), alone)
    assert read_factors(small / "video_0001")["motion"] == read_factors(large / "video_0001")["motion"]
    # and the rendered videos of one dataset are not all the same video
    first = np.asarray(Image.open(large / "video_0000" / "img_0000.png")).astype(int)
    assert np.abs(first - alone[0].astype(int)).mean() > 1.0


@pytest.mark.parametrize("name", sorted(DOMAINS))
def test_frames_move(name):
    frames = get_domain(name).video(0, 1, 12, 32).frames.astype(float)
    assert np.abs(np.diff(frames, axis=0)).mean() > 0.1
    assert frames.std() > 10  # not a flat image


def test_face_factors_vary_over_time():
    video = get_domain("faces").video(0, 0, 32, 32)
    mouth, eyes, yaw = video.motion["mouth_open"], video.motion["eye_open"], video.motion["yaw"]
    assert len(mouth) == 32
    assert mouth.max() - mouth.min() > 0.5          # talks
    assert eyes.min() < 0.2 and eyes.max() == 1.0    # blinks
    assert np.ptp(yaw) > 0.05 and np.abs(yaw).max() <= 0.9   # turns


@pytest.mark.parametrize("name", ["faces", "robots"])
def test_mouth_factor_drives_the_pixels(name, monkeypatch):
    """With the head held still, opening the mouth changes the pixels around the mouth and
    nowhere else (frames of a free-moving head differ everywhere, which would prove nothing)."""
    from mocohd_cli.data.domains import faces as face_module

    def still_head(mouth):
        def motion(rng, n_frames):
            factors = {k: np.zeros(n_frames) for k in ("yaw", "pitch", "roll", "shift_x", "shift_y")}
            return {**factors, "eye_open": np.ones(n_frames), "mouth_open": np.asarray(mouth, float)}
        return motion

    monkeypatch.setattr(face_module, "face_motion", still_head([0.0, 0.0]))
    shut = get_domain(name).video(0, 2, 2, 64).frames
    np.testing.assert_array_equal(shut[0], shut[1])  # nothing else changes between the frames
    monkeypatch.setattr(face_module, "face_motion", still_head([0.0, 1.0]))
    talking = get_domain(name).video(0, 2, 2, 64).frames
    np.testing.assert_array_equal(talking[0], shut[0])  # same face, same closed mouth
    diff = np.abs(talking[1].astype(int) - talking[0].astype(int)).sum(-1)
    assert diff.max() > 100
    rows, cols = np.nonzero(diff)
    # the mouth sits in the lower middle of the head (centre 0.5, 0.5 of the frame)
    assert 0.5 * 64 <= rows.min() and rows.max() <= 0.8 * 64
    assert 0.3 * 64 <= cols.min() and cols.max() <= 0.7 * 64


def test_sky_clouds_drift_steadily():
    video = get_domain("sky").video(0, 0, 10, 32)
    step = np.diff(video.motion["cloud_x"])
    np.testing.assert_allclose(step, step[0], rtol=1e-6)
    assert abs(step[0]) > 0
    assert video.motion["daylight"][-1] < video.motion["daylight"][0]


def test_faces_and_robots_look_different():
    faces = get_domain("faces").video(0, 0, 1, 32).frames.mean(axis=(0, 1, 2))
    robots = get_domain("robots").video(0, 0, 1, 32).frames.mean(axis=(0, 1, 2))
    assert np.abs(faces - robots).sum() > 60  # pastel faces vs dark robot scenes


def test_make_dataset_layout_and_factors(tmp_path):
    out = make_dataset("faces", tmp_path / "faces", videos=2, frames=4, size=16, seed=7)
    assert sorted(p.name for p in out.iterdir()) == ["dataset.json", "video_0000", "video_0001"]
    names = sorted(p.name for p in (out / "video_0001").iterdir())
    assert names == ["factors.json", "img_0000.png", "img_0001.png", "img_0002.png", "img_0003.png"]
    with Image.open(out / "video_0000" / "img_0002.png") as image:
        assert image.size == (16, 16) and image.mode == "RGB"
        pixels = np.asarray(image)
    np.testing.assert_array_equal(pixels, get_domain("faces").video(7, 0, 4, 16).frames[2])
    factors = read_factors(out / "video_0001")
    assert factors["domain"] == "faces" and factors["index"] == 1 and factors["seed"] == 7
    assert set(factors["motion"]) >= {"mouth_open", "eye_open", "yaw", "pitch", "roll"}
    assert all(len(values) == 4 for values in factors["motion"].values())
    settings = json.loads((out / "dataset.json").read_text())
    assert settings["videos"] == 2 and settings["size"] == 16


def test_make_dataset_refuses_foreign_folder_and_overwrites_own(tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    with pytest.raises(MocohdError, match="not empty"):
        make_dataset("sky", foreign, videos=1, frames=2, size=16)
    with pytest.raises(MocohdError, match="only replaces"):
        make_dataset("sky", foreign, videos=1, frames=2, size=16, overwrite=True)
    assert (foreign / "keep.txt").exists()
    own = make_dataset("sky", tmp_path / "own", videos=3, frames=2, size=16)
    make_dataset("sky", own, videos=1, frames=2, size=16, overwrite=True)
    assert sorted(p.name for p in own.iterdir()) == ["dataset.json", "video_0000"]


def test_unknown_domain_and_bad_sizes(tmp_path):
    with pytest.raises(MocohdError, match="unknown domain"):
        make_dataset("dragons", tmp_path / "x")
    with pytest.raises(MocohdError):
        get_domain("faces").video(0, 0, 0, 32)
    with pytest.raises(MocohdError):
        make_dataset("faces", tmp_path / "y", videos=0)


def test_cli_data_make_and_list(tmp_path):
    from typer.testing import CliRunner

    from mocohd_cli.cli import app

    runner = CliRunner()
    listed = runner.invoke(app, ["data", "list"])
    assert listed.exit_code == 0 and "robots" in listed.output
    made = runner.invoke(app, ["data", "make", "robots", "--out", str(tmp_path / "r"), "--videos", "1",
                               "--frames", "2", "--size", "16"])
    assert made.exit_code == 0, made.output
    assert (tmp_path / "r" / "video_0000" / "img_0001.png").exists()
