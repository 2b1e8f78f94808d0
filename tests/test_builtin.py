"""The built-in default: shipped example backbones, cached example datasets, quick schedules."""
from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from mocohd_cli.workflows import builtin
from mocohd_cli.data.domains import dataset_settings
from mocohd_cli.infra.errors import MocohdError


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(builtin.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_cache_dir_follows_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(builtin.CACHE_ENV, str(tmp_path / "c"))
    assert builtin.cache_dir() == tmp_path / "c"
    monkeypatch.delenv(builtin.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert builtin.cache_dir() == tmp_path / "xdg" / "mocohd"


def test_default_dataset_is_rendered_once_and_reused(cache):
    path = builtin.default_dataset("sky", videos=2, frames=3, size=16)
    assert path.parent == cache / "datasets"
    settings = dataset_settings(path)
    assert settings["domain"] == "sky" and settings["videos"] == 2
    stamp = (path / "video_0000" / "img_0000.png").stat().st_mtime_ns
    assert builtin.default_dataset("sky", videos=2, frames=3, size=16) == path
    assert (path / "video_0000" / "img_0000.png").stat().st_mtime_ns == stamp
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no staging left


def test_incomplete_cached_dataset_is_replaced(cache):
    folder = cache / "datasets" / "faces-16px-1x2-seed0"
    (folder / "video_0000").mkdir(parents=True)  # interrupted: no dataset.json
    path = builtin.default_dataset("faces", videos=1, frames=2, size=16)
    assert path == folder and dataset_settings(path) is not None
    assert (path / "video_0000" / "img_0001.png").exists()


def test_unknown_example_names():
    with pytest.raises(MocohdError, match="unknown domain"):
        builtin.default_backbone("dragons")
    with pytest.raises(MocohdError, match="unknown domain"):
        builtin.default_dataset("dragons")


def test_shipped_backbones_resolve_and_load():
    from mocohd_cli import load_backbone

    shipped = builtin.example_backbones()
    assert {"faces", "robots", "sky"} <= set(shipped), "the example backbones must ship in mocohd_cli/assets"
    for name, path in shipped.items():
        assert builtin.default_backbone(name) == path
        assert path.stat().st_size < 8 * 2 ** 20  # a few MB each
        model = load_backbone(None, path)
        assert model.resolution == builtin.EXAMPLE_SIZE


def test_default_configs_point_at_the_examples(cache, monkeypatch):
    from mocohd_cli.training import TrainConfig  # our own module: a failed import must fail, not skip

    rendered = []
    monkeypatch.setattr(builtin, "default_dataset", lambda name: rendered.append(name) or cache / name)
    train = builtin.default_train_config()
    assert train.mode == "in-domain" and train.checkpoint == str(builtin.default_backbone("faces"))
    assert train.data == str(cache / "faces") and train.iterations and train.video_frame_size == 64
    assert train.n_pca <= 256  # the example backbones' W has 256 dimensions
    transfer = builtin.default_transfer_config(out="x")
    assert transfer.mode == "cross-domain" and transfer.checkpoint == str(builtin.default_backbone("robots"))
    assert transfer.out == "x" and rendered == ["faces", "faces"]
    # the cross-domain example's objective (docs/examples.md, "Robots"): the motion view, with the penalty
    assert transfer.video_d_view == "motion" and transfer.w_drift > 0 and transfer.drift_horizon > transfer.frames
    # the in-domain example's latent motion discriminator learns from the shipped projections, made with its backbone
    from mocohd_cli.infra.files import sha256_of
    from mocohd_cli.models.latent_prior import read_projections

    assert train.w_latent_motion > 0 and transfer.w_latent_motion == 0
    # and its identity loss uses the shipped encoder of the example videos (tests/test_identity.py checks what it sees)
    assert train.w_identity > 0 and transfer.w_identity == 0 and Path(train.identity_encoder).is_file()
    latents = read_projections(train.latent_motion, backbone_sha256=sha256_of(train.checkpoint),
                               time_step=train.time_step, frames=train.frames)
    assert latents.shape[0] == 64 and latents.shape[1] > train.frames and torch.isfinite(latents).all()
    # a run of the example with another time step projects its own videos instead of failing on the shipped ones
    from mocohd_cli.commands.train import _fit_example_projections

    assert _fit_example_projections(train) is train
    assert _fit_example_projections(builtin.default_train_config(time_step=1)).latent_motion is None
    # its motion basis comes from the same projections (docs/examples.md, "Motion basis"), so a run without the
    # latent motion discriminator still drops projections that do not fit
    assert train.pca_source == "videos" and transfer.pca_source == "latents"
    assert _fit_example_projections(builtin.default_train_config(time_step=1, w_latent_motion=0.0)).latent_motion is None
    assert isinstance(train, TrainConfig) and isinstance(transfer, TrainConfig)
    train.validate()
    transfer.validate()


@pytest.mark.parametrize("command, example", [("train", "faces"), ("transfer", "robots")])
def test_command_without_inputs_uses_the_example(command, example, cache, monkeypatch):
    """`mocohd train` / `mocohd transfer` without an image generator and videos run the built-in
    example; options given on the command line win over its schedule."""
    from types import SimpleNamespace

    from typer.testing import CliRunner

    import mocohd_cli.commands.train as train_command  # the name the command calls
    from mocohd_cli.cli import app

    monkeypatch.setattr(builtin, "default_dataset", lambda name: cache / f"{name}-videos")
    trained = []
    monkeypatch.setattr(train_command, "train", lambda config: trained.append(config) or SimpleNamespace(
        steps=config.iterations, motion_path=cache / "motion.safetensors", losses={}))
    result = CliRunner().invoke(app, [command, "--iterations", "3"])
    assert result.exit_code == 0, result.output
    (config,) = trained
    assert config.checkpoint == str(builtin.default_backbone(example))
    assert config.data == str(cache / "faces-videos")
    assert config.mode == ("in-domain" if command == "train" else "cross-domain")
    assert config.iterations == 3  # given on the command line: wins over the example's 80 / 60
    assert config.batch_size == builtin.QUICK_SCHEDULE["batch_size"]  # not given: the example's


def test_train_command_with_only_one_input_names_the_other(cache, monkeypatch):
    from typer.testing import CliRunner

    import mocohd_cli.commands.train as train_command  # the name the command calls
    from mocohd_cli.cli import app

    monkeypatch.setattr(train_command, "train", lambda config: pytest.fail("must not train without --data"))
    result = CliRunner().invoke(app, ["train", "--checkpoint", str(cache / "g.safetensors")])
    assert result.exit_code == 2
    assert "--data" in result.output


def test_shipped_motion_models_record_portable_backbones():
    from mocohd_cli.models.motion import load_motion_and_backbone, read_motion_info

    shipped = builtin.shipped_example_motions()
    assert {"faces", "robots", "sky"} <= set(shipped), "the trained examples must ship in mocohd_cli/assets"
    for name, path in shipped.items():
        info = read_motion_info(path)
        assert info["backbone_checkpoint"].startswith("example:")  # found on any machine, not a local path
        backbone, motion, _ = load_motion_and_backbone(path)
        assert backbone.checkpoint_sha256 == info["backbone_sha256"] and path.stat().st_size < 8 * 2 ** 20
    robots = read_motion_info(shipped["robots"])  # robot images, face motion: its own backbone, cross-domain
    assert robots["backbone_checkpoint"] == "example:robots" and robots["mode"] == "cross-domain"
    with pytest.raises(MocohdError, match="unknown example"):
        builtin.example_motion("dragons")


def test_sample_example_and_bare_sample(tmp_path, monkeypatch):
    """`mocohd sample --example faces` needs no training; bare `mocohd sample` falls back to it when
    there is no run; --example with a motion model of one's own is refused."""
    from typer.testing import CliRunner

    from mocohd_cli.cli import app

    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    args = ["-n", "2", "--frames", "3", "--format", "png"]
    result = runner.invoke(app, ["sample", "--example", "faces", "--out", "a", *args])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["sample", "--out", "b", *args])
    assert result.exit_code == 0 and "faces example" in result.output, result.output
    for out in ("a", "b"):
        assert sorted(p.name for p in (tmp_path / out).iterdir()) == ["video_0000", "video_0001"]
        assert len(list((tmp_path / out / "video_0000").glob("*.png"))) == 3
    assert (tmp_path / "a" / "video_0001" / "frame_0002.png").read_bytes() == \
        (tmp_path / "b" / "video_0001" / "frame_0002.png").read_bytes()
    result = runner.invoke(app, ["sample", "--example", "faces", "--motion", "m.safetensors", *args])
    assert result.exit_code == 2 and "--example" in result.output and "--motion" in result.output


def test_sample_sky_and_robots_examples(tmp_path):
    """The sky example samples on its own backbone: sky-coloured frames (blue above the horizon, dark
    ground below), not faces. The robots example samples robot heads: a dark background around a
    brighter head."""
    from typer.testing import CliRunner

    from mocohd_cli.cli import app

    result = CliRunner().invoke(app, ["sample", "--example", "sky", "-n", "2", "--frames", "4", "--format", "png",
                                      "--out", str(tmp_path / "sky")])
    assert result.exit_code == 0, result.output
    frames = np.stack([iio.imread(f) for f in sorted((tmp_path / "sky").glob("video_*/*.png"))]).astype(float)
    assert frames.shape == (8, 64, 64, 3)
    top, ground = frames[:, :16].mean(axis=(0, 1, 2)), frames[:, -8:].mean(axis=(0, 1, 2))
    assert top[2] > top[0] and ground.mean() < top.mean() - 40  # sky blue on top, hills darker below
    result = CliRunner().invoke(app, ["sample", "--example", "robots", "-n", "2", "--frames", "4", "--format", "png",
                                      "--out", str(tmp_path / "robots")])
    assert result.exit_code == 0, result.output
    frames = np.stack([iio.imread(f) for f in sorted((tmp_path / "robots").glob("video_*/*.png"))]).astype(float)
    assert frames.shape == (8, 64, 64, 3)
    corners = np.concatenate([frames[:, :8, :8], frames[:, :8, -8:]], axis=1).mean()
    head = frames[:, 20:40, 24:40].mean()
    assert corners < 90 and head > corners + 40  # the robots' dark grid around a lit metal head
