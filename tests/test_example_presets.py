"""Issue 36 item 2: the built-in examples' schedules as presets (example-train, example-transfer), chosen
unasked for a shipped example backbone with the user's videos, and the run saying which preset and
which options differ from it."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

import mocohd_cli.commands.train as train_command  # the name the command calls
from mocohd_cli.cli import app
from mocohd_cli.training.presets import PRESETS
from mocohd_cli.workflows import builtin
from mocohd_cli.workflows.builtin import default_backbone, default_transfer_values, example_schedule

runner = CliRunner()


@pytest.fixture
def trained(monkeypatch):
    """`train` replaced by a stand-in that keeps the config it is given."""
    seen = []

    def train(config):
        seen.append(config)
        return SimpleNamespace(steps=0, losses={}, motion_path="motion.safetensors")

    monkeypatch.setattr(train_command, "train", train)
    return seen


def run(*args) -> str:
    result = runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())


def test_the_examples_schedules_are_listed_presets(monkeypatch, tmp_path):
    monkeypatch.setattr(builtin, "default_dataset", lambda name: tmp_path)  # not rendered: only its path is used
    text = run("transfer", "--list-presets")
    assert "example-train" in text and "example-transfer" in text
    assert PRESETS["example-transfer"].values["video_d_view"] == "motion"
    # the built-in example runs what the preset holds, plus its own files
    schedule = {k: v for k, v in default_transfer_values().items() if k not in ("checkpoint", "data", "batch_size")}
    assert schedule == PRESETS["example-transfer"].values and PRESETS["example-transfer"].global_batch == 4


def test_transfer_from_an_example_backbone_gets_the_example_schedule(trained, tmp_path):
    text = run("transfer", "--image-domain", "example:faces", "--motion-domain", tmp_path, "--iterations", "5",
               "--video-d-view", "motion")
    config = trained[-1]
    assert config.preset == "example-transfer"
    assert (config.iterations, config.lr, config.frames, config.image_d_channels) == (5, 5e-4, 8, 32)
    assert config.global_batch == 4 and config.video_frame_size == 64  # 4 clips a step over all processes
    assert "preset example-transfer (chosen for the shipped example backbone" in text
    assert "options that differ from it: --iterations 5 (preset: 60)" in text  # --video-d-view agrees: not listed


def test_train_from_the_example_file_gets_the_in_domain_schedule(trained, tmp_path):
    text = run("train", "--checkpoint", default_backbone("faces"), "--data", tmp_path)
    config = trained[-1]
    assert config.preset == "example-train"
    assert config.w_drift == example_schedule("in-domain")["w_drift"] and config.iterations == 80
    assert config.latent_motion is None  # the example's projections are of its own videos: projected anew
    assert "options that differ from it: none" in text


def test_an_explicit_preset_wins_and_other_backbones_keep_the_defaults(trained, tmp_path, tiny_stylegan2_checkpoint):
    text = run("transfer", "--image-domain", "example:robots", "--motion-domain", tmp_path, "--preset", "ffhq-vox")
    assert trained[-1].preset == "ffhq-vox" and "chosen for" not in text
    run("train", "--checkpoint", tiny_stylegan2_checkpoint, "--data", tmp_path)
    assert trained[-1].preset is None and trained[-1].lr == 1e-4
    assert not builtin.is_example_backbone(str(tiny_stylegan2_checkpoint))
    assert builtin.is_example_backbone("example:sky") and builtin.is_example_backbone(str(default_backbone("sky")))


def test_a_batch_size_given_over_a_preset_is_kept(trained, tmp_path):
    run("transfer", "--image-domain", "example:faces", "--motion-domain", tmp_path, "--batch-size", "2")
    assert trained[-1].batch_size == 2 and trained[-1].global_batch is None
    run("transfer", "--image-domain", "example:faces", "--motion-domain", tmp_path)
    assert trained[-1].global_batch == 4


@pytest.mark.parametrize("name", ["example-train", "example-transfer"])
def test_the_example_presets_are_valid_train_configs(name):
    from mocohd_cli.training import TrainConfig

    preset = PRESETS[name]
    assert "batch_size" not in preset.values and preset.generator_resolution == 64
    TrainConfig(**preset.values, global_batch=preset.global_batch).validate()
