"""The latent phase as a phase of `mocohd train` (training/trainer.py): its steps come before the rendered
ones, render nothing, log under [latent], and a run interrupted inside it resumes to the same weights."""
from __future__ import annotations

import os
import signal

import pytest
import torch

from mocohd_cli.infra.distributed import init_distributed
from mocohd_cli.infra.errors import MocohdError
from mocohd_cli.infra.files import read_safetensors
from mocohd_cli.training import TrainConfig, train
from mocohd_cli.training.trainer import Trainer

from test_train import config
from test_training_pinned import projections  # noqa: F401 (a fixture: 6 projected walks of 8 frames)

SETTINGS = {"iterations": 2, "latent_iterations": 4, "latent_batch": 4, "latent_samples": 2, "g_steps": 1,
            "checkpoint_every": 100, "sample_every": 100, "num_samples": 0}


def test_latent_steps_come_first_render_nothing_and_are_logged(tiny_stylegan2_checkpoint, tiny_videos, projections,
                                                               tmp_path, monkeypatch):
    trainer = Trainer(config(tiny_stylegan2_checkpoint, tiny_videos, tmp_path / "run", latent_motion=str(projections),
                             **SETTINGS), init_distributed("cpu"), progress=False)
    assert trainer.total == 6 and trainer.phase == "latent"
    rendered = []
    synthesize = trainer.backbone.synthesize
    monkeypatch.setattr(trainer.backbone, "synthesize",
                        lambda *a, **k: rendered.append(trainer.step) or synthesize(*a, **k))
    before = {k: v.clone() for k, v in trainer.motion.state_dict().items()}
    result = trainer.fit()
    assert result.steps == 6
    assert rendered and min(rendered) == 4, "a latent-phase step rendered frames"
    assert any(not torch.equal(before[k], v) for k, v in trainer.motion.state_dict().items())
    log = (tmp_path / "run" / "log.txt").read_text()
    assert "step 4/6 [latent] latent/score=" in log and "step 6/6 [rendered] g/video=" in log
    _, meta = read_safetensors(result.motion_path)
    assert meta["latent_iterations"] == "4"


def test_ctrl_c_inside_the_latent_phase_resumes_to_the_same_weights(tiny_stylegan2_checkpoint, tiny_videos,
                                                                    projections, tmp_path):
    settings = {**SETTINGS, "latent_motion": str(projections), "w_latent_adversarial": 0.5}
    full = train(config(tiny_stylegan2_checkpoint, tiny_videos, tmp_path / "full", **settings), progress=False)

    cut = tmp_path / "cut"
    trainer = Trainer(config(tiny_stylegan2_checkpoint, tiny_videos, cut, **settings), init_distributed("cpu"),
                      progress=False)
    step = trainer.latent_phase.step

    def interrupted_at_step_two(rng):
        losses = step(rng)
        if trainer.latent_phase.step_count == 2:
            os.kill(os.getpid(), signal.SIGINT)  # the engine finishes this step, saves the state, stops
        return losses

    trainer.latent_phase.step = interrupted_at_step_two
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    state = torch.load(cut / "state" / "latest.pt", weights_only=True)
    assert state["step"] == 2 and state["latent_phase"]["step"] == 2

    resumed = train(config(tiny_stylegan2_checkpoint, tiny_videos, cut, resume=True, **settings), progress=False)
    a, _ = read_safetensors(full.motion_path)
    b, _ = read_safetensors(resumed.motion_path)
    assert resumed.steps == 6 and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(MocohdError, match="latent_iterations"):
        train(config(tiny_stylegan2_checkpoint, tiny_videos, cut, resume=True,
                     **{**settings, "latent_iterations": 5}), progress=False)


def test_latent_phase_settings_are_checked():
    with pytest.raises(MocohdError, match="in-domain only"):
        TrainConfig(mode="cross-domain", latent_iterations=10).validate()
    with pytest.raises(MocohdError, match="latent-samples"):
        TrainConfig(latent_iterations=10, latent_samples=1).validate()
