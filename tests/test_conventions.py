"""Conventions users expect: the licence, shell completion, help panels, library logging the CLI
renders and a program can silence, run provenance, TensorBoard videos and hyper-parameters."""
from __future__ import annotations

import logging
import subprocess
import sys
import tomllib
import warnings
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from mocohd_cli.app import PANELS, cli_logging
from mocohd_cli.cli import app
from mocohd_cli.infra.errors import MocohdWarning
from mocohd_cli.infra.provenance import append_provenance, command_line, read_provenance

ROOT = Path(__file__).resolve().parents[1]


def test_licence_file_matches_the_metadata():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    text = (ROOT / "LICENSE").read_text()
    assert project["license"] == "MIT" and project["license-files"] == ["LICENSE"]  # SPDX form (PEP 639)
    assert text.startswith("MIT License")
    assert "Copyright (c) 2026 the mocohd authors" in text
    assert "huggingface_hub" in " ".join(project["dependencies"])


def test_shell_completion_is_offered():
    result = CliRunner().invoke(app, ["--help"])
    assert "--install-completion" in result.output and "--show-completion" in result.output


def test_every_command_sits_in_a_help_panel():
    click_app = typer.main.get_command(app)
    panels = {name: getattr(command, "rich_help_panel", None) for name, command in click_app.commands.items()}
    assert all(panel in PANELS for panel in panels.values()), panels
    assert panels["pretrain"] == panels["train"] == panels["transfer"] == "train"
    assert panels["sample"] == "generate" and panels["eval"] == "evaluate" and panels["zoo"] == panels["push"]
    # --help lists them panel by panel in PANELS' order
    names = click_app.list_commands(None)
    assert [panels[n] for n in names] == sorted((panels[n] for n in names), key=PANELS.index)


def test_importing_the_library_configures_no_logging():
    code = ("import logging, warnings; show = warnings.showwarning; import mocohd_cli, mocohd_cli.cli; "
            "print(len(logging.getLogger().handlers), len(logging.getLogger('mocohd_cli').handlers), "
            "warnings.showwarning is show)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["0", "0", "True"]


def test_library_messages_go_through_logging_and_can_be_silenced(tmp_path, caplog):
    from mocohd_cli.data.clips import VideoClips

    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        for i in range(6):
            from PIL import Image

            Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / name / f"img_{i}.png")
    for i in range(1, 6):
        (tmp_path / "a" / f"img_{i}.png").write_bytes(b"broken")
    data = VideoClips(tmp_path, n_frames=3, time_step=1, size=8)
    with caplog.at_level(logging.WARNING, logger="mocohd_cli"):
        data[(0, 0)]
    assert any("skipping unreadable video" in r.getMessage() and r.name == "mocohd_cli.data.clips"
               for r in caplog.records)
    caplog.clear()
    logging.getLogger("mocohd_cli").setLevel(logging.ERROR)  # how a program silences mocohd
    try:
        data[(0, 0)]
    finally:
        logging.getLogger("mocohd_cli").setLevel(logging.NOTSET)
    assert not caplog.records


def test_the_cli_renders_records_and_warnings_with_rich(capsys):
    with cli_logging():
        logging.getLogger("mocohd_cli.training.trainer").info("run folder: %s", "runs/x")
        warnings.warn("trained with another backbone", MocohdWarning)
    err = capsys.readouterr().err
    assert "run folder: runs/x" in err and "WARNING" in err and "trained with another backbone" in err
    assert not logging.getLogger("mocohd_cli").handlers  # removed again after the invocation
    with warnings.catch_warnings():
        warnings.simplefilter("error", MocohdWarning)  # a program's filters still apply
        with pytest.raises(MocohdWarning):
            warnings.warn("x", MocohdWarning)


def test_provenance_is_appended_per_start(tmp_path, monkeypatch):
    run = tmp_path / "run"
    run.mkdir()
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-c", "user.email=a@b", "-c", "user.name=a", "-C", str(repo)]
    subprocess.run(git[:5] + ["init", "-q", str(repo)], check=True)
    (repo / "f").write_text("x")
    subprocess.run(git + ["add", "f"], check=True)
    subprocess.run(git + ["commit", "-qm", "c"], check=True)
    commit = subprocess.run(git + ["rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    monkeypatch.chdir(repo)
    append_provenance(run, device="cpu", step=0, argv=["/usr/bin/mocohd", "train", "--frames", "8"])
    monkeypatch.chdir(tmp_path)  # not a repository: no commit recorded
    append_provenance(run, device="cpu", step=40, argv=["mocohd", "train", "--resume"])
    starts = read_provenance(run)
    import torch

    from mocohd_cli import __version__

    assert [s["step"] for s in starts] == [0, 40]
    assert starts[0]["git_commit"] == commit and starts[0]["git_dirty"] is False and "git_commit" not in starts[1]
    assert starts[0]["command"] == "mocohd train --frames 8" and starts[0]["device"] == "cpu"
    assert starts[0]["mocohd"] == __version__ and starts[0]["torch"] == torch.__version__
    assert ("cuda" in starts[0]) == (torch.version.cuda is not None)
    assert command_line(["mocohd", "push", "hf_abcdefghijkl1234"]) == "mocohd push hf_***"


def test_tensorboard_gets_videos_and_hyperparameters(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from torch.utils.tensorboard import SummaryWriter

    from mocohd_cli.infra.tensorboard import log_hparams, log_video

    writer = SummaryWriter(str(tmp_path))
    frames = np.zeros((3, 8, 10, 3), np.uint8)
    frames[1] = 255
    log_video(writer, "samples", frames, 5, fps=4)
    log_hparams(writer, {"lr": 1e-4, "frames": 8, "classes": [1, 2], "preset": None}, {"g/total": 0.5})
    writer.close()
    events = EventAccumulator(str(tmp_path), size_guidance={"images": 0})
    events.Reload()
    image = events.Images("samples")[0]
    assert image.step == 5 and (image.width, image.height) == (10, 8)
    assert image.encoded_image_string.startswith(b"GIF89a")
    import io

    from PIL import Image

    assert Image.open(io.BytesIO(image.encoded_image_string)).n_frames == 3
    assert "hparam/g/total" in events.Tags()["scalars"]


def test_a_training_run_records_provenance_videos_and_hparams(tiny_stylegan2_checkpoint, tiny_videos, tmp_path):
    """`mocohd train` (2 tiny iterations): provenance.toml beside config.toml, the sample grid and the
    hyper-parameters in TensorBoard, the run folder announced through the rendered log."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    args = ["train", "--checkpoint", str(tiny_stylegan2_checkpoint), "--data", str(tiny_videos), "--out", str(run),
            "--frames", "4", "--time-step", "2", "--video-frame-size", "16", "--batch-size", "2", "--h-dim", "8",
            "--n-pca", "8", "--d-channels", "4", "--pca-samples", "256", "--workers", "0", "--num-samples", "2",
            "--sample-format", "gif", "--iterations", "2", "--sample-every", "1", "--device", "cpu"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert f"runfolder:{run}" in "".join(result.output.split())  # rich wraps long lines
    (start,) = read_provenance(run)
    assert start["device"] == "cpu" and start["step"] == 0 and start["command"]  # (the test runner's argv here)
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    assert [image.step for image in events.Images("samples")] == [1, 2]
    assert "hparam/g/mi" in events.Tags()["scalars"]  # add_hparams' metrics, against the run's settings
