"""Image-generator pre-training: a tiny StyleGAN2 for a few steps on CPU."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mocohd_cli import load_backbone
from mocohd_cli.data.domains import get_domain, make_dataset
from mocohd_cli.infra.errors import MocohdError
from mocohd_cli.infra.files import torch_load_safely
from mocohd_plugins.stylegan2.pretrain import (PretrainConfig, Pretrainer, compact_channels, diff_augment, load_frames,
                                 r1_penalty)

TINY = dict(size=16, style_dim=32, n_mlp=2, channels={4: 32, 8: 16, 16: 16}, batch_size=4, sample_every=2,
            checkpoint_minutes=1e6)


@pytest.fixture(scope="module")
def frames() -> torch.Tensor:
    video = get_domain("faces").video(0, 0, 8, 16).frames
    return torch.from_numpy(video).permute(0, 3, 1, 2).contiguous()


def _params(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_few_steps_finite_losses_and_ema_lags(tmp_path, frames):
    trainer = Pretrainer(PretrainConfig(steps=3, **TINY), frames, tmp_path / "run", device="cpu")
    before = _params(trainer.generator)
    losses = [trainer.train_step() for _ in range(3)]
    for step in losses:
        assert np.isfinite([step.d, step.g, step.real, step.fake]).all()
    assert np.isfinite(losses[0].r1)  # lazy R1 runs on the first step
    after = _params(trainer.generator)
    ema = _params(trainer.ema)
    moved = [k for k in before if before[k].is_floating_point() and not torch.equal(before[k], after[k])]
    assert moved, "the generator did not train"
    assert any(not torch.equal(after[k], ema[k]) for k in moved), "the EMA should lag the generator"
    assert any(not torch.equal(before[k], ema[k]) for k in moved), "the EMA should move towards the generator"


def test_resume_continues_exactly(tmp_path, frames):
    straight = Pretrainer(PretrainConfig(steps=4, **TINY), frames, tmp_path / "a", device="cpu")
    straight.run()
    first = Pretrainer(PretrainConfig(steps=2, **TINY), frames, tmp_path / "b", device="cpu")
    first.run()
    state = torch_load_safely(tmp_path / "b" / "state.pt")  # weights_only=True loads it
    assert int(state["step"]) == 2
    resumed = Pretrainer(PretrainConfig(steps=4, **TINY), frames, tmp_path / "b", device="cpu")
    resumed.run()
    assert resumed.step == 4
    for name, value in straight.ema.state_dict().items():
        torch.testing.assert_close(resumed.ema.state_dict()[name], value, rtol=1e-5, atol=1e-6)
    logged = [json.loads(line)["step"] for line in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert logged == [2, 4]
    assert (tmp_path / "b" / "samples" / "step_0000004.png").exists()


def test_resume_refuses_other_architecture_or_no_resume(tmp_path, frames):
    Pretrainer(PretrainConfig(steps=1, **TINY), frames, tmp_path / "run", device="cpu").run()
    other = dict(TINY, style_dim=16)
    with pytest.raises(MocohdError, match="different architecture"):
        Pretrainer(PretrainConfig(steps=2, **other), frames, tmp_path / "run", device="cpu").run()
    with pytest.raises(MocohdError, match="already holds"):
        Pretrainer(PretrainConfig(steps=2, **TINY), frames, tmp_path / "run", device="cpu").run(resume=False)


def test_export_loads_as_a_backbone(tmp_path, frames):
    trainer = Pretrainer(PretrainConfig(steps=1, **TINY), frames, tmp_path / "run", device="cpu")
    path = trainer.run()
    backbone = load_backbone(None, path)
    assert backbone.name == "stylegan2" and backbone.resolution == 16 and backbone.latent_dim == 32
    w = backbone.sample_latent(2, rng=torch.Generator().manual_seed(0))
    video = backbone.synthesize(torch.stack([w, w], 1), noise="const")
    assert video.shape == (2, 2, 3, 16, 16)
    # the export is the EMA generator
    z = torch.randn(3, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(backbone.render(backbone.mapping(z), backbone.stored_noise()),
                                   trainer.ema.render(trainer.ema.mapping(z), trainer.ema.stored_noise()))


def test_diff_augment_is_differentiable_and_changes_images():
    images = torch.rand(4, 3, 16, 16, requires_grad=True) * 2 - 1
    images.retain_grad()
    out = diff_augment(images, rng=torch.Generator().manual_seed(0))
    assert out.shape == images.shape and not torch.allclose(out, images)
    out.sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
    assert torch.equal(diff_augment(images, strength=0.0), images)


def test_r1_penalty_matches_a_known_gradient():
    x = torch.randn(3, 2, requires_grad=True)
    logits = (x * torch.tensor([3.0, 4.0])).sum(1)  # gradient (3, 4) per sample: squared norm 25
    assert r1_penalty(logits, x).item() == pytest.approx(25.0)


def test_load_frames_from_a_generated_dataset(tmp_path):
    make_dataset("robots", tmp_path / "d", videos=2, frames=3, size=32)
    frames = load_frames(tmp_path / "d", 16)
    assert frames.shape == (6, 3, 16, 16) and frames.dtype == torch.uint8
    assert load_frames(tmp_path / "d", 16, max_images=4).shape[0] == 4
    with pytest.raises(MocohdError, match="no images"):
        (tmp_path / "empty").mkdir()
        load_frames(tmp_path / "empty", 16)


def test_config_defaults():
    config = PretrainConfig()
    assert config.channels == compact_channels(64) and config.channels[4] == 128 and config.channels[64] == 32
    assert config.r1_gamma == 1.0
    assert PretrainConfig(r1_gamma=-1, batch_size=8).r1_gamma == pytest.approx(0.0002 * 64 ** 2 / 8)
    assert PretrainConfig.from_json(config.to_json()) == config
    with pytest.raises(MocohdError):
        PretrainConfig(size=48)


def test_interrupt_saves_state_and_export(tmp_path, frames, monkeypatch):
    trainer = Pretrainer(PretrainConfig(steps=10, **TINY), frames, tmp_path / "run", device="cpu")
    real_step = trainer.train_step

    def step_then_interrupt():
        if trainer.step == 2:
            raise KeyboardInterrupt
        return real_step()

    monkeypatch.setattr(trainer, "train_step", step_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        trainer.run()
    assert int(torch_load_safely(tmp_path / "run" / "state.pt")["step"]) == 2
    assert load_backbone(None, tmp_path / "run" / "generator.safetensors").resolution == 16
