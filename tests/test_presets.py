"""`--preset NAME`: the release's per-dataset training scripts as TrainConfig values."""
from __future__ import annotations

import dataclasses

import pytest

from mocohd_cli.infra.errors import MocohdError
from mocohd_cli.training import TrainConfig
from mocohd_cli.training.presets import EXAMPLE_PRESETS, PRESETS, Preset, get_preset

EXPECTED_NAMES = {"ucf101", "faceforensics", "sky-timelapse", "ffhq-vox", "ffhq-vox-1024", "afhq-vox", "anime-vox",
                  "church-tlvdb"}
FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}
RELEASED = {name: preset for name, preset in PRESETS.items() if name not in EXAMPLE_PRESETS.values()}


def test_every_released_script_has_a_preset():
    assert set(RELEASED) == EXPECTED_NAMES  # and the examples' own (tests/test_example_presets.py)
    for name, preset in RELEASED.items():
        assert isinstance(preset, Preset) and preset.name == name
        assert preset.source.startswith("snap-research/MoCoGAN-HD script/") and preset.source.endswith(".sh")
        assert preset.description


@pytest.mark.parametrize("name", sorted(EXPECTED_NAMES))
def test_preset_values_are_valid_train_configs(name):
    preset = get_preset(name)
    unknown = set(preset.values) - FIELDS
    assert not unknown, f"{name}: not TrainConfig fields: {sorted(unknown)}"
    assert "batch_size" not in preset.values  # the release's batch is global: see Preset.global_batch
    config = TrainConfig(**preset.values)
    config.validate()
    assert config.mode in ("in-domain", "cross-domain")
    # every script: 16 frames every 2nd source frame, 128 px for the discriminators, lr 1e-4
    assert (config.frames, config.time_step, config.video_frame_size, config.lr) == (16, 2, 128, 1e-4)
    assert (config.h_dim, config.n_pca, config.w_residual, config.g_steps) == (384, 384, 0.2, 5)
    # also through the path a config file takes (TOML-style keys with dashes)
    TrainConfig.from_dict({k.replace('_', '-'): v for k, v in preset.values.items()}).validate()


def test_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        get_preset("ucf101").global_batch = 4


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(MocohdError) as error:
        get_preset("kinetics")
    text = str(error.value)
    assert "kinetics" in text
    for name in EXPECTED_NAMES:
        assert name in text


def test_release_facts():
    sky = get_preset("sky-timelapse")
    assert sky.global_batch == 32 and sky.values["epochs"] == 200 and sky.values["mode"] == "in-domain"
    assert sky.generator_resolution == 128
    assert sky.source == "snap-research/MoCoGAN-HD script/sky_timelapse/run_train.sh"

    ffhq = get_preset("ffhq-vox")
    assert ffhq.values["w_match"] == 5.0 and ffhq.values["mode"] == "cross-domain"
    assert ffhq.values["epochs"] == 30  # the script's, not the README's 25
    assert ffhq.global_batch == 16 and ffhq.generator_resolution == 256

    ucf = get_preset("ucf101")
    assert ucf.values["epochs"] == 20 and ucf.values["mode"] == "in-domain"  # the script's, not the README's 100
    assert ucf.global_batch == 16

    hd = get_preset("ffhq-vox-1024")
    assert hd.values["w_match"] == 5.0 and hd.generator_resolution == 1024
    assert hd.source.endswith("script/ffhq-vox/run_train_1024.sh")
    for name in ("afhq-vox", "anime-vox"):
        preset = get_preset(name)
        assert preset.global_batch == 8 and preset.values["epochs"] == 100 and preset.generator_resolution == 512
        assert preset.values["w_match"] == 1.0
    church = get_preset("church-tlvdb")
    assert church.values["epochs"] == 200 and church.values["mode"] == "cross-domain"
    assert get_preset("faceforensics").values["epochs"] == 100
    # the release's PCA: 4000 x 250 latents
    assert all(p.values["pca_samples"] == 1_000_000 for p in RELEASED.values())


def test_global_batch_is_kept_apart_from_the_per_process_batch():
    for preset in RELEASED.values():
        assert preset.global_batch in (8, 16, 32)
        config = TrainConfig(**preset.values, global_batch=preset.global_batch)
        config.validate()
        assert config.batch_size == TrainConfig().batch_size  # untouched until the trainer knows the world size


def test_a_preset_runs_only_under_its_own_command(tmp_path):
    from typer.testing import CliRunner

    from mocohd_cli.cli import app

    result = CliRunner().invoke(app, ["train", "--preset", "ffhq-vox", "--checkpoint", str(tmp_path / "g.pt"),
                                      "--data", str(tmp_path)])
    assert result.exit_code == 2 and "mocohd transfer --preset ffhq-vox" in result.output


def test_preset_values_sit_under_the_options_given(tmp_path):
    from mocohd_cli.training.resume import resolve_config

    config = resolve_config({"preset": "sky-timelapse", "mode": "in-domain", "epochs": 3.0})
    assert config.epochs == 3.0 and config.global_batch == 32 and config.preset == "sky-timelapse"
