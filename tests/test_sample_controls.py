"""`mocohd sample` content and motion controls (--same-content, --same-motion, --decomposition,
--lerp), latents files (--save-latents / --latents), streaming, and its refusals of bad input."""
import errno

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mocohd_cli.cli import app
from mocohd_cli.models.generation import default_specs, interpolate_content, iter_videos
from mocohd_cli.models.motion import MotionGenerator

runner = CliRunner()
TILE = 32 + 2  # the tiny backbone's frames plus the grid padding


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def motion_file(tiny_stylegan2, tiny_stylegan2_checkpoint, tmp_path):
    torch.manual_seed(0)
    motion = MotionGenerator(tiny_stylegan2.latent_dim, h_dim=16, n_pca=8, w_residual=2.0)
    return motion.save(tmp_path / "motion.safetensors", backbone="stylegan2", fps=5,
                       backbone_checkpoint=str(tiny_stylegan2_checkpoint))


def sample(motion_file, out, *args):
    result = run("sample", "--motion", motion_file, "--out", out, *args)
    assert result.exit_code == 0, result.output
    return result


def png_video(folder):
    """[T, H, W, 3] uint8 frames of a --format png video folder."""
    return np.stack([iio.imread(p) for p in sorted(folder.glob("frame_*.png"))])


def latents(path):
    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def test_same_content_shares_frame_zero_and_moves_differently(motion_file, tmp_path):
    sample(motion_file, tmp_path / "o", "--same-content", "-n", 3, "--frames", 5, "--format", "png",
           "--save-latents", tmp_path / "l.npz")
    videos = [png_video(tmp_path / "o" / f"video_{i:04d}") for i in range(3)]
    for video in videos[1:]:
        assert np.array_equal(video[0], videos[0][0])  # one content code (and its noise maps)
        assert not np.array_equal(video[-1], videos[0][-1])  # three motions
    saved = latents(tmp_path / "l.npz")
    assert (saved["content"] == saved["content"][0]).all()
    assert not np.array_equal(saved["motion_noise"][0], saved["motion_noise"][1])


def test_same_motion_shares_the_motion_noise_across_contents(motion_file, tmp_path):
    sample(motion_file, tmp_path / "o", "--same-motion", "-n", 3, "--frames", 4, "--format", "png",
           "--save-latents", tmp_path / "l.npz")
    saved = latents(tmp_path / "l.npz")
    assert (saved["motion_noise"] == saved["motion_noise"][0]).all()
    assert not np.array_equal(saved["content"][0], saved["content"][1])
    first = [png_video(tmp_path / "o" / f"video_{i:04d}")[0] for i in range(3)]
    assert not np.array_equal(first[0], first[1]) and not np.array_equal(first[1], first[2])


def test_latents_file_replays_the_same_bytes(motion_file, tmp_path):
    # Saved with non-default options: the file brings them back when they are not given.
    sample(motion_file, tmp_path / "a", "-n", 3, "--frames", 4, "--seed", 5, "--interpolate", "--batch-size", 2,
           "--save-latents", tmp_path / "l.npz")
    result = sample(motion_file, tmp_path / "b", "--latents", tmp_path / "l.npz")
    assert "3 video(s), 7 frames" in " ".join(result.output.split())
    files = sorted((tmp_path / "a").glob("*.mp4"))
    assert len(files) == 3
    for file in files:
        assert file.read_bytes() == (tmp_path / "b" / file.name).read_bytes()
    saved = latents(tmp_path / "l.npz")
    assert saved["trajectories"].shape == (3, 4, 32) and saved["motion_noise"].shape == (3, 3, 32)
    assert bool(saved["interpolate"]) and "classes" not in saved
    # the same videos in one batch: the file is what was rendered, whatever the batch
    sample(motion_file, tmp_path / "c", "--latents", tmp_path / "l.npz", "--batch-size", 3)
    assert all(f.read_bytes() == (tmp_path / "c" / f.name).read_bytes() for f in files)


def test_decomposition_grid_rows_share_content_columns_share_motion(motion_file, tmp_path):
    sample(motion_file, tmp_path / "o", "--decomposition", 2, 3, "--frames", 4, "--format", "png",
           "--save-latents", tmp_path / "l.npz")
    (folder,) = (tmp_path / "o").iterdir()
    assert folder.name == "decomposition_2x3"
    grid = png_video(folder)
    assert grid.shape == (4, 2 + 2 * TILE, 2 + 3 * TILE, 3)

    def tile(r, c, t):
        return grid[t, 2 + r * TILE:r * TILE + TILE, 2 + c * TILE:c * TILE + TILE]

    for r in range(2):
        assert all(np.array_equal(tile(r, c, 0), tile(r, 0, 0)) for c in range(3))
        assert not np.array_equal(tile(r, 1, 3), tile(r, 0, 3))
    assert not np.array_equal(tile(0, 0, 0), tile(1, 0, 0))
    sample(motion_file, tmp_path / "again", "--latents", tmp_path / "l.npz", "--decomposition", 2, 3, "--format", "png")
    assert np.array_equal(png_video(tmp_path / "again" / "decomposition_2x3"), grid)  # the file, laid out again
    noise = latents(tmp_path / "l.npz")["motion_noise"].reshape(2, 3, 3, 32)
    assert np.array_equal(noise[0], noise[1])  # columns share motion
    assert not np.array_equal(noise[0, 0], noise[0, 1])
    # its first row is the --same-content videos of the seed, its first column the --same-motion ones
    sample(motion_file, tmp_path / "row", "--same-content", "-n", 3, "--frames", 4, "--format", "png")
    assert np.array_equal(png_video(tmp_path / "row" / "video_0002")[0], tile(0, 2, 0))
    sample(motion_file, tmp_path / "col", "--same-motion", "-n", 2, "--frames", 4, "--format", "png")
    assert np.array_equal(png_video(tmp_path / "col" / "video_0001")[0], tile(1, 0, 0))


def test_lerp_runs_from_seed_a_content_to_seed_b_content(motion_file, tmp_path):
    sample(motion_file, tmp_path / "lerp", "--lerp", 3, 7, "--seed", 7, "-n", 1, "--frames", 6, "--format", "png",
           "--noise", "const", "--save-latents", tmp_path / "lerp.npz")
    sample(motion_file, tmp_path / "a", "--seed", 3, "-n", 1, "--frames", 6, "--format", "png", "--noise", "const",
           "--save-latents", tmp_path / "a.npz")
    sample(motion_file, tmp_path / "b", "--seed", 7, "-n", 1, "--frames", 6, "--format", "png", "--noise", "const",
           "--save-latents", tmp_path / "b.npz")
    lerp, a, b = (png_video(tmp_path / name / "video_0000") for name in ("lerp", "a", "b"))
    assert np.array_equal(lerp[0], a[0])  # starts as seed 3's video
    assert np.abs(lerp[-1].astype(int) - b[-1]).max() <= 2  # ends as seed 7's (same motion noise)
    assert np.abs(lerp[-1].astype(int) - a[-1]).mean() > 5 and np.abs(lerp[0].astype(int) - b[0]).mean() > 5
    traj = {name: latents(tmp_path / f"{name}.npz")["trajectories"][0] for name in ("lerp", "a", "b")}
    assert np.array_equal(traj["lerp"][0], traj["a"][0])
    np.testing.assert_allclose(traj["lerp"][-1], traj["b"][-1], atol=1e-5)


def test_content_interpolation_ends_exact_and_slerp_keeps_the_norm():
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(2, 64, generator=gen), torch.randn(2, 64, generator=gen)
    alpha = torch.arange(5) / 4
    for mode in ("linear", "slerp"):
        path = interpolate_content(a, b, alpha, mode)
        assert torch.equal(path[:, 0], a) and torch.equal(path[:, -1], b)
    linear, slerp = interpolate_content(a, b, alpha, "linear"), interpolate_content(a, b, alpha, "slerp")
    torch.testing.assert_close(linear[:, 2], (a + b) / 2)
    # two Gaussian codes are nearly orthogonal: the straight line sags to ~1/sqrt(2) of their norm
    ends = (a.norm(dim=-1) + b.norm(dim=-1)) / 2
    assert (linear[:, 2].norm(dim=-1) < 0.85 * ends).all()
    assert ((slerp[:, 2].norm(dim=-1) - ends).abs() < 0.1 * ends).all()


def test_biggan_classes_are_saved_and_replayed(tmp_path):
    import json

    from test_biggan import TINY, tiny_state_dict

    folder = tmp_path / "biggan"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(TINY))
    torch.save(tiny_state_dict(TINY), folder / "pytorch_model.bin")
    motion = MotionGenerator(TINY["z_dim"], h_dim=8, n_pca=8).save(tmp_path / "m.safetensors", backbone="biggan",
                                                                   backbone_checkpoint=str(folder))
    common = ["--motion", motion, "--frames", 3, "--format", "png", "--truncation", 0.5]
    assert run("sample", *common, "-n", 3, "--class", 4, "--class", 1, "--out", tmp_path / "a",
               "--save-latents", tmp_path / "l.npz").exit_code == 0
    saved = latents(tmp_path / "l.npz")
    assert saved["classes"].tolist() == [4, 1, 4] and float(saved["truncation"]) == 0.5
    result = run("sample", "--motion", motion, "--latents", tmp_path / "l.npz", "--format", "png", "--out", tmp_path / "b")
    assert result.exit_code == 0, result.output
    for i in range(3):
        assert np.array_equal(png_video(tmp_path / "a" / f"video_{i:04d}"), png_video(tmp_path / "b" / f"video_{i:04d}"))
    lerp = run("sample", *common, "--lerp", 0, 1, "--out", tmp_path / "lerp")  # slerp in z
    assert lerp.exit_code == 0, lerp.output


# -- malformed latents files ----------------------------------------------------------------------
def _good_latents(tmp_path, motion_file):
    sample(motion_file, tmp_path / "good", "-n", 2, "--frames", 3, "--format", "gif", "--save-latents",
           tmp_path / "good.npz")
    return latents(tmp_path / "good.npz")


@pytest.mark.parametrize("case, expected", [
    ("text", "not a readable .npz"), ("npy", "not an .npz"), ("missing", "'trajectories'"),
    ("dtype", "'content'"), ("dim", "'trajectories'"), ("nan", "'motion_noise'"), ("pickle", "'content'"),
    ("unknown", "'extra'"), ("classes", "'classes'"), ("start", "'trajectories'"), ("shape", "'motion_noise'"),
    ("noise_mode", "'noise'"), ("fps", "'fps'"),
])
def test_malformed_latents_files_give_one_clear_error(case, expected, motion_file, tmp_path):
    arrays = _good_latents(tmp_path, motion_file)
    bad = tmp_path / "bad.npz"
    if case == "text":
        bad.write_text("not a zip")
    elif case == "npy":
        with open(bad, "wb") as handle:
            np.save(handle, arrays["content"])
    else:
        if case == "missing":
            del arrays["trajectories"]
        elif case == "dtype":
            arrays["content"] = arrays["content"].astype(np.float64)
        elif case == "dim":  # latents of another backbone
            arrays = {**arrays, **{k: arrays[k][..., :16].copy() for k in ("content", "motion_noise", "trajectories")}}
        elif case == "nan":
            arrays["motion_noise"][1, 0, 3] = np.nan
        elif case == "pickle":
            arrays["content"] = np.array([object()] * 2, dtype=object)
        elif case == "unknown":
            arrays["extra"] = np.zeros(2)
        elif case == "classes":
            arrays["classes"] = np.array([0, 1])
        elif case == "start":
            arrays["trajectories"][0, 0, 0] += 1
        elif case == "shape":
            arrays["motion_noise"] = arrays["motion_noise"][:, :1].copy()
        elif case == "noise_mode":
            arrays["noise"] = np.str_("loud")
        elif case == "fps":
            arrays["fps"] = np.float64(-4)
        np.savez(bad, **arrays)
    result = run("sample", "--motion", motion_file, "--latents", bad, "--out", tmp_path / "o")
    assert result.exit_code == 2, result.output
    flat = " ".join(result.output.split())
    assert "bad.npz" in flat and expected in flat
    assert "Traceback" not in result.output
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


# -- streaming and limits -------------------------------------------------------------------------
def test_videos_stream_batch_by_batch(tiny_stylegan2, motion_file, tmp_path, monkeypatch):
    # A billion videos: the first batch comes at once (nothing is made up front) ...
    motion = MotionGenerator(tiny_stylegan2.latent_dim, h_dim=16, n_pca=8)
    batch, frames = next(iter_videos(tiny_stylegan2, motion, default_specs(0, 10 ** 9), n_frames=3, batch_size=2))
    assert frames.shape == (2, 3, 3, 32, 32) and batch.start == 0
    # ... and through the command each batch is written before the next one is made.
    import mocohd_cli.workflows.sampling as sampling

    calls, write = [], sampling.write_videos

    def write_then_stop(videos, *args, **kwargs):
        calls.append(kwargs["start"])
        if len(calls) == 3:
            raise KeyboardInterrupt  # stands for ^C in the middle of a long run
        return write(videos, *args, **kwargs)

    monkeypatch.setattr(sampling, "write_videos", write_then_stop)
    result = run("sample", "--motion", motion_file, "-n", 10 ** 9, "--frames", 2, "--batch-size", 2,
                 "--format", "gif", "--out", tmp_path / "o")
    assert result.exit_code != 0 and calls == [0, 2, 4]
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == [f"video_{i:09d}.gif" for i in range(4)]


@pytest.mark.parametrize("args, option", [
    (["-n", 10 ** 6, "--grid"], "--grid"),
    (["--decomposition", 1000, 1000], "--decomposition"),
    (["--frames", 10 ** 9], "--frames"),
    (["--save-latents", "l.npz", "-n", 10 ** 7], "--save-latents"),
])
def test_what_cannot_stream_is_capped_with_a_clear_error(args, option, motion_file, tmp_path):
    result = run("sample", "--motion", motion_file, "--out", tmp_path / "o", *args)
    assert result.exit_code == 2, result.output
    assert option in result.output and "GiB" in result.output
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


@pytest.mark.parametrize("args, option", [
    (["--fps", 0], "--fps"), (["--fps", -3], "--fps"), (["--fps", "nan"], "--fps"), (["--fps", "inf"], "--fps"),
    (["--fps", 10 ** 6], "--fps"), (["--fps", 60, "--format", "gif"], "--fps"),
    (["--truncation", "nan"], "--truncation"), (["--truncation", "inf"], "--truncation"),
    (["--same-content", "--same-motion"], "--same-motion"), (["--decomposition", 2, 2, "-n", 3], "--num-videos"),
    (["--decomposition", 0, 2], "--decomposition"), (["--latents", "x.npz", "--frames", 3], "--frames"),
    (["--noise", "loud"], "--noise"), (["--latents", "x.npz", "--seed", 0], "--seed"),
])
def test_bad_options_are_refused_before_any_work(args, option, motion_file, tmp_path):
    result = run("sample", "--motion", motion_file, "--out", tmp_path / "o", *args)
    assert result.exit_code == 2, result.output
    assert option in result.output and "Traceback" not in result.output
    assert not (tmp_path / "o").exists()


NAN_BACKBONE = """
import torch
from torch import nn
from mocohd_cli import ImageGenerator


class NanGenerator(ImageGenerator):
    \"\"\"Finite weights, but frames after the first come out NaN (as from a diverged generator).\"\"\"
    name, latent_dim, z_dim, resolution = "nan", 8, 8, 8

    def __init__(self):
        super().__init__()
        self.gain = nn.Parameter(torch.ones(1))

    def mapping(self, z):
        return z

    def synthesize(self, latents, *, condition=None, noise="random", rng=None):
        b, t, _ = latents.shape
        frames = torch.tanh(latents.mean(-1))[:, :, None, None, None].expand(b, t, 3, 8, 8).clone()
        frames[:, 1:] = float("nan")
        return frames * self.gain
"""


def test_frames_that_are_not_finite_are_an_error(tmp_path):
    (tmp_path / "nan_backbone.py").write_text(NAN_BACKBONE)
    result = run("sample", "--backbone", f"{tmp_path / 'nan_backbone.py'}:NanGenerator", "-n", 2, "--frames", 3,
                 "--format", "png", "--out", tmp_path / "o")
    assert result.exit_code == 2, result.output
    assert "not finite" in result.output and "Traceback" not in result.output
    assert not any((tmp_path / "o").iterdir())  # never a black or grey video


# -- output errors --------------------------------------------------------------------------------
def test_out_that_is_a_file_is_refused(motion_file, tmp_path):
    (tmp_path / "o").write_text("mine")
    result = run("sample", "--motion", motion_file, "--out", tmp_path / "o", "-n", 1, "--frames", 2)
    assert result.exit_code == 2, result.output
    assert "--out" in result.output and (tmp_path / "o").read_text() == "mine"


def test_a_full_disk_leaves_the_earlier_files_intact(motion_file, tmp_path, monkeypatch):
    out = tmp_path / "o"
    sample(motion_file, out, "-n", 2, "--frames", 2, "--format", "gif")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    import imageio.v3

    def full_disk(path, *args, **kwargs):
        with open(path, "wb") as handle:
            handle.write(b"GIF89a half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(imageio.v3, "imwrite", full_disk)
    result = run("sample", "--motion", motion_file, "--out", out, "-n", 2, "--frames", 2, "--format", "gif",
                 "--seed", 9)
    assert result.exit_code == 2, result.output
    assert "No space left on device" in result.output and "video_0000.gif" in result.output
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # no temporary file either


def test_a_folder_in_the_way_of_a_video_is_one_clear_error(motion_file, tmp_path):
    (tmp_path / "o" / "video_0000.gif").mkdir(parents=True)
    result = run("sample", "--motion", motion_file, "--out", tmp_path / "o", "-n", 1, "--frames", 2,
                 "--format", "gif")
    assert result.exit_code == 2, result.output
    assert "video_0000.gif" in result.output and "Traceback" not in result.output
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["video_0000.gif"]


# -- replays: what a latents file records, what does not apply ------------------------------------
def test_a_replay_keeps_the_frame_rate_unless_given(motion_file, tmp_path):
    sample(motion_file, tmp_path / "a", "-n", 1, "--frames", 3, "--fps", 12, "--save-latents", tmp_path / "l.npz")
    assert float(latents(tmp_path / "l.npz")["fps"]) == 12.0
    sample(motion_file, tmp_path / "b", "--latents", tmp_path / "l.npz")  # the motion model says 5
    assert (tmp_path / "a" / "video_0000.mp4").read_bytes() == (tmp_path / "b" / "video_0000.mp4").read_bytes()
    sample(motion_file, tmp_path / "c", "--latents", tmp_path / "l.npz", "--fps", 3)  # a given --fps wins
    assert iio.immeta(tmp_path / "c" / "video_0000.mp4", plugin="pyav")["fps"] == 3


def test_a_replay_saved_again_records_the_files_truncation(motion_file, tmp_path):
    sample(motion_file, tmp_path / "a", "-n", 2, "--frames", 3, "--truncation", 0.5, "--format", "png",
           "--save-latents", tmp_path / "a.npz")
    result = sample(motion_file, tmp_path / "b", "--latents", tmp_path / "a.npz", "--truncation", 0.9,
                    "--format", "png", "--save-latents", tmp_path / "b.npz")
    assert "changes nothing in a replay" in " ".join(result.output.split())
    first, second = latents(tmp_path / "a.npz"), latents(tmp_path / "b.npz")
    assert float(second["truncation"]) == 0.5  # StyleGAN2: the trajectories are fixed, 0.9 changed nothing
    assert all(np.array_equal(first[key], second[key]) for key in first)
    assert np.array_equal(png_video(tmp_path / "a" / "video_0001"), png_video(tmp_path / "b" / "video_0001"))


def test_an_unwritable_latents_file_is_refused_before_any_video(motion_file, tmp_path):
    (tmp_path / "blocker").write_text("a file where a folder should be")
    result = run("sample", "--motion", motion_file, "--out", tmp_path / "o", "-n", 2, "--frames", 2,
                 "--format", "gif", "--save-latents", tmp_path / "blocker" / "l.npz")
    assert result.exit_code == 2, result.output
    assert "--save-latents" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())
