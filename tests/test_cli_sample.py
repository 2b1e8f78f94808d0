"""`mocohd sample` end to end through the CLI, and the CLI's error contract."""
import imageio.v3 as iio
import pytest
from typer.testing import CliRunner

from mocohd_cli.cli import app
from mocohd_cli.models.motion import MotionGenerator

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_sample_writes_playable_mp4s_of_requested_length(tiny_stylegan2_checkpoint, tmp_path):
    out = tmp_path / "a"
    result = run("sample", "--checkpoint", tiny_stylegan2_checkpoint, "--num-videos", 2, "--frames", 7,
                 "--seed", 3, "--out", out)
    assert result.exit_code == 0, result.output
    assert "UNTRAINED" in result.output  # no --motion: says so plainly
    files = sorted(out.glob("*.mp4"))
    assert len(files) == 2
    frames = iio.imread(files[0], plugin="FFMPEG")
    assert frames.shape == (7, 32, 32, 3)  # the tiny backbone's resolution
    # same seed, same bytes; another seed, other bytes
    again = run("sample", "--checkpoint", tiny_stylegan2_checkpoint, "--num-videos", 2, "--frames", 7,
                "--seed", 3, "--out", tmp_path / "b")
    assert again.exit_code == 0
    assert files[0].read_bytes() == (tmp_path / "b" / files[0].name).read_bytes()
    other = run("sample", "--checkpoint", tiny_stylegan2_checkpoint, "--num-videos", 2, "--frames", 7,
                "--seed", 4, "--out", tmp_path / "c")
    assert other.exit_code == 0
    assert files[0].read_bytes() != (tmp_path / "c" / files[0].name).read_bytes()


def test_sample_with_motion_interpolate_grid_and_long_videos(tiny_stylegan2, tiny_stylegan2_checkpoint, tmp_path):
    motion = MotionGenerator(tiny_stylegan2.latent_dim, h_dim=16, n_pca=8)
    path = motion.save(tmp_path / "motion.safetensors", backbone="stylegan2", fps=5,
                       backbone_checkpoint=str(tiny_stylegan2_checkpoint))
    result = run("sample", "--motion", path, "--num-videos", 3, "--frames", 40, "--interpolate", "--grid",
                 "--format", "gif", "--out", tmp_path / "g")
    assert result.exit_code == 0, result.output
    (grid,) = (tmp_path / "g").glob("*.gif")
    assert iio.imread(grid, index=None).shape[0] == 79
    result = run("sample", "--checkpoint", tiny_stylegan2_checkpoint, "--motion", path, "--num-videos", 1,
                 "--frames", 3, "--format", "png", "--noise", "const", "--out", tmp_path / "p")
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "p").rglob("*.png"))) == 3


@pytest.mark.parametrize("case", ["missing", "not_a_checkpoint", "unknown_backbone", "motion_for_other_backbone",
                                  "not_a_motion_model", "bad_format"])
def test_bad_inputs_give_one_clear_error(case, tiny_stylegan2_checkpoint, tmp_path):
    args = ["sample", "--out", tmp_path / "o", "--frames", 2, "--num-videos", 1]
    expected = None
    if case == "missing":
        args += ["--checkpoint", tmp_path / "nothing.pt"]
        expected = "nothing.pt"
    elif case == "not_a_checkpoint":
        junk = tmp_path / "junk.pt"
        junk.write_text("hello")
        args += ["--backbone", "stylegan2", "--checkpoint", junk]
        expected = "junk.pt"
    elif case == "unknown_backbone":
        args += ["--backbone", "nosuchgan", "--checkpoint", tiny_stylegan2_checkpoint]
        expected = "mocohd backbones"
    elif case == "motion_for_other_backbone":
        path = MotionGenerator(7, h_dim=4, n_pca=4).save(tmp_path / "m7.safetensors", backbone="stylegan2")
        args += ["--checkpoint", tiny_stylegan2_checkpoint, "--motion", path]
        expected = "m7.safetensors"
    elif case == "not_a_motion_model":
        bad = tmp_path / "bad.safetensors"
        bad.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
        args += ["--checkpoint", tiny_stylegan2_checkpoint, "--motion", bad]
        expected = "bad.safetensors"
    elif case == "bad_format":
        args += ["--checkpoint", tiny_stylegan2_checkpoint, "--format", "avi"]
        expected = "--format"
    result = run(*args)
    assert result.exit_code == 2, result.output
    assert expected in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_motion_from_other_weights_of_same_architecture_is_flagged(tiny_stylegan2, tiny_stylegan2_checkpoint, tmp_path):
    motion = MotionGenerator(tiny_stylegan2.latent_dim, h_dim=8, n_pca=8)
    path = motion.save(tmp_path / "m.safetensors", backbone="stylegan2", backbone_sha256="0" * 64,
                       backbone_checkpoint="elsewhere.pt")
    result = run("sample", "--checkpoint", tiny_stylegan2_checkpoint, "--motion", path, "--num-videos", 1,
                 "--frames", 2, "--format", "gif", "--out", tmp_path / "o")
    assert result.exit_code == 0, result.output
    assert "warning" in result.output.lower() and "elsewhere.pt" in result.output
