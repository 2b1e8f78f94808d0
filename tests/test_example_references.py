"""`example:NAME` (mocohd_cli/workflows/zoo.py, mocohd_cli/infra/hub.py): the shipped backbone where a
checkpoint is asked for, the shipped trained motion model where a motion model is (sample, eval,
animate, and every reader of a motion file: models/motion.py); `mocohd zoo list` shows both; and
`mocohd --version`."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import mocohd_cli
from mocohd_cli.cli import app
from mocohd_cli.infra.hub import as_kind, portable_reference, resolve
from mocohd_cli.models.motion import load_motion, load_motion_and_backbone, read_motion_info
from mocohd_cli.workflows.builtin import default_backbone, example_motion

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_example_is_the_backbone_as_a_checkpoint_and_the_motion_model_as_a_motion():
    backbone, motion = Path(resolve("example:faces")), Path(resolve("example:faces", kind="motion"))
    assert backbone == default_backbone("faces") and motion == example_motion("faces")
    assert portable_reference(backbone) == "example:faces"
    # a path example:faces resolved to before it was known to be a motion model maps to the motion model
    assert Path(as_kind(str(backbone), "motion")) == motion and as_kind(backbone, "motion") == motion
    assert as_kind(str(motion), "motion") == str(motion)  # the motion file itself, unchanged
    assert as_kind("somewhere/else.safetensors", "motion") == "somewhere/else.safetensors"
    assert resolve("zoo-free/path.safetensors", kind="motion") == "zoo-free/path.safetensors"


@pytest.mark.parametrize("name", ["faces", "robots", "sky"])
def test_every_motion_reader_takes_an_example_name(name):
    info = read_motion_info(f"example:{name}")
    assert info["backbone_checkpoint"].startswith("example:")
    assert load_motion(f"example:{name}").n_pca == info["n_pca"]
    assert read_motion_info(default_backbone(name)) == info  # what --motion example:NAME resolves to first


def test_load_motion_and_backbone_of_an_example():
    backbone, motion, info = load_motion_and_backbone("example:faces")
    assert backbone.latent_dim == motion.latent_dim and info["backbone_checkpoint"] == "example:faces"


def test_sample_motion_example(tmp_path):
    result = run("sample", "--motion", "example:faces", "-n", 1, "--frames", 2, "--out", tmp_path / "out",
                 "--threads", 1)
    assert result.exit_code == 0, result.output
    assert list((tmp_path / "out").iterdir())


def test_animate_motion_example(tmp_path):
    image = tmp_path / "face.png"
    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(image)
    result = run("animate", image, "--motion", "example:faces", "--steps", 0, "--frames", 2,
                 "--out", tmp_path / "out", "--threads", 1)
    assert result.exit_code == 0, result.output
    assert list((tmp_path / "out").iterdir())


def test_eval_motion_example_is_a_motion_model(tmp_path, monkeypatch):
    """The bug of issue 39: `eval --motion example:faces` read the faces backbone as a motion model."""
    monkeypatch.setenv("MOCOHD_CACHE", str(tmp_path / "cache"))
    result = run("eval", "--motion", "example:faces", "--domain", "faces", "--metric", "motion", "--num-videos", 2,
                 "--frames", 4, "--threads", 1)
    assert result.exit_code == 0, result.output
    assert "motion" in result.output and "not a mocohd motion model" not in result.output


def test_zoo_list_shows_the_backbone_and_the_motion_model_of_each_example():
    result = run("zoo", "list")
    assert result.exit_code == 0, result.output
    for name in ("faces", "robots", "sky"):
        kinds = {line.split("│")[2].strip() for line in result.output.splitlines() if f"example:{name} " in line}
        assert kinds == {"backbone", "motion"}, result.output


def test_version():
    result = run("--version")
    assert result.exit_code == 0 and result.output.strip() == f"mocohd {mocohd_cli.__version__}"
