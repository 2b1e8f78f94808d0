"""An objective and a loss term from a third-party plugin run end to end: the plugin (tests/plugins/) is
"installed" as a distribution whose entry points name them, and `mocohd train --objective NAME --term
NAME=WEIGHT` trains with both."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mocohd_cli.cli import app
from mocohd_cli.training import objectives, terms

from test_train import TINY, cli_args

PLUGIN = Path(__file__).parent / "plugins" / "mocohd_test_plugin.py"


@pytest.fixture
def installed_plugin(tmp_path, monkeypatch):
    """The plugin module and a dist-info folder declaring its entry points, on sys.path (what pip would
    leave in site-packages); the registries are restored afterwards."""
    site = tmp_path / "site"
    info = site / "mocohd_test_plugin-0.1.dist-info"
    info.mkdir(parents=True)
    shutil.copy(PLUGIN, site / PLUGIN.name)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mocohd-test-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[mocohd.objectives]\nclip-lsgan = mocohd_test_plugin:ClipLSGAN\n\n"
                                           "[mocohd.terms]\nsmooth = mocohd_test_plugin:SmoothSteps.build\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(objectives, "OBJECTIVES", dict(objectives.OBJECTIVES))
    monkeypatch.setattr(terms, "TERMS", dict(terms.TERMS))
    yield


def train_args(checkpoint, videos, out, *extra):
    return ["train", "--checkpoint", str(checkpoint), "--data", str(videos), "--out", str(out),
            *cli_args({**TINY, "iterations": 2, "g_steps": 1, "num_samples": 0}), *extra]


def test_a_plugin_objective_and_term_train_end_to_end(installed_plugin, tiny_stylegan2_checkpoint, tiny_videos,
                                                      tmp_path):
    run = tmp_path / "run"
    result = CliRunner().invoke(app, train_args(tiny_stylegan2_checkpoint, tiny_videos, run,
                                                "--objective", "clip-lsgan", "--term", "smooth=0.5"))
    assert result.exit_code == 0, result.output
    log = (run / "log.txt").read_text()
    assert "g/plugin=" in log and "d/plugin=" in log and "g/smooth=" in log
    assert "g/video=" not in log  # the in-domain objective did not run
    assert (run / "motion.safetensors").exists()
    assert 'objective = "clip-lsgan"' in (run / "config.toml").read_text()


def test_unknown_objective_and_term_are_one_clear_error(installed_plugin, tiny_stylegan2_checkpoint, tiny_videos,
                                                        tmp_path):
    runner = CliRunner()
    bad = runner.invoke(app, train_args(tiny_stylegan2_checkpoint, tiny_videos, tmp_path / "a", "--objective", "nope"))
    assert bad.exit_code == 2 and "no objective is registered as 'nope'" in bad.output
    assert "clip-lsgan" in bad.output  # the entry points are listed among the choices
    bad = runner.invoke(app, train_args(tiny_stylegan2_checkpoint, tiny_videos, tmp_path / "b", "--term", "nope=1"))
    assert bad.exit_code == 2 and "no loss term is registered as 'nope'" in bad.output
