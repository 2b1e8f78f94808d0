"""Gradient checkpointing of the frozen generator's synthesis (`--checkpointing`): the same
gradients as without it, fewer activations kept for the backward pass, and the trainer's knob."""
from __future__ import annotations

import pytest
import torch
from conftest import make_tiny_stylegan2

from mocohd_cli.infra.distributed import DistContext
from mocohd_cli.infra.errors import MocohdError
from mocohd_cli.training import TrainConfig
from mocohd_cli.training.trainer import Trainer

# 64 px (four checkpointed resolutions), narrow enough to run in well under a second
CHANNELS = {4: 32, 8: 32, 16: 16, 32: 16, 64: 8}


def frozen_model():
    return make_tiny_stylegan2(seed=4, size=64, channels=CHANNELS).freeze()


def gradients(model, w, noise, *, checkpointing, precision=None):
    """d(loss)/dw of a fixed, non-trivial function of the frames."""
    model.set_checkpointing(checkpointing)
    w = w.clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        frames = model.render(w, noise)
    loss = (frames * torch.linspace(-1, 1, frames.numel()).view_as(frames)).sum() + frames.square().mean()
    loss.backward()
    return frames.detach(), w.grad


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_checkpointing_gives_the_same_gradients(precision):
    model = frozen_model()
    model.set_low_precision(min_resolution=0, min_channels=0)  # bf16 really used under autocast
    w = model.mapping(torch.randn(3, model.style_dim, generator=torch.Generator().manual_seed(0))).detach()
    noise = model.make_noise(3, rng=torch.Generator().manual_seed(1))
    frames, grad = gradients(model, w, noise, checkpointing=False, precision=precision)
    frames_ckpt, grad_ckpt = gradients(model, w, noise, checkpointing=True, precision=precision)
    assert grad.abs().max() > 0
    # the recomputed forward is the same arithmetic: equal to rounding, not merely close
    assert torch.allclose(frames_ckpt, frames, rtol=0, atol=1e-6)
    assert torch.allclose(grad_ckpt, grad, rtol=1e-5, atol=1e-6 * grad.abs().max().item())


def test_checkpointing_also_matches_for_trainable_parameters():
    model = make_tiny_stylegan2(seed=5, size=64, channels=CHANNELS)
    z = torch.randn(2, model.style_dim, generator=torch.Generator().manual_seed(0))
    grads = []
    for enabled in (False, True):
        model.zero_grad()
        model.set_checkpointing(enabled)
        model(z, noise="const").square().mean().backward()
        grads.append({name: p.grad.clone() for name, p in model.named_parameters()})
    for name, grad in grads[0].items():
        assert torch.allclose(grads[1][name], grad, rtol=1e-5, atol=1e-7), name


def saved_bytes(model, w, noise, *, checkpointing) -> int:
    """Bytes autograd keeps for the backward pass of one render (packed saved tensors)."""
    model.set_checkpointing(checkpointing)
    total = 0

    def pack(tensor):
        nonlocal total
        total += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model.render(w.clone().requires_grad_(True), noise)
    return total


def test_checkpointing_keeps_far_fewer_activations():
    model = frozen_model()
    w = model.mapping(torch.randn(4, model.style_dim)).detach()
    noise = model.make_noise(4)
    plain = saved_bytes(model, w, noise, checkpointing=False)
    kept = saved_bytes(model, w, noise, checkpointing=True)
    assert kept < plain / 4, (kept, plain)


TINY = {"frames": 4, "time_step": 2, "video_frame_size": 16, "batch_size": 2, "h_dim": 16, "n_pca": 8,
        "d_channels": 4, "pca_samples": 512, "workers": 0, "num_samples": 0, "device": "cpu", "g_steps": 2}


def test_trainer_with_checkpointing_takes_the_same_steps(tiny_stylegan2_checkpoint, tiny_videos, tmp_path):
    """One iteration with and without --checkpointing: the same losses and motion weights."""
    results = []
    for enabled in (False, True):
        cfg = TrainConfig(backbone="stylegan2", checkpoint=str(tiny_stylegan2_checkpoint), data=str(tiny_videos),
                          out=str(tmp_path / f"run-{enabled}"), checkpointing=enabled, iterations=1, **TINY)
        trainer = Trainer(cfg, DistContext(0, 1, 0, torch.device("cpu")), progress=False)
        assert trainer.backbone.checkpointing is enabled
        real = trainer.dataset[(0, 0)][None].repeat(2, 1, 1, 1, 1)
        losses = trainer.iteration(real)
        results.append((losses, {k: v.clone() for k, v in trainer.motion.state_dict().items()}))
    (losses, motion), (losses_ckpt, motion_ckpt) = results
    for name in losses:
        assert torch.allclose(losses_ckpt[name], losses[name], rtol=1e-5, atol=1e-6), name
    for name in motion:
        assert torch.allclose(motion_ckpt[name], motion[name], rtol=1e-5, atol=1e-7), name


def test_checkpointing_is_refused_for_a_backbone_without_it(tiny_stylegan2_checkpoint, tiny_videos, tmp_path,
                                                            monkeypatch):
    from mocohd_plugins.stylegan2 import StyleGAN2Generator

    monkeypatch.delattr(StyleGAN2Generator, "set_checkpointing")  # a backbone that does not offer it
    cfg = TrainConfig(backbone="stylegan2", checkpoint=str(tiny_stylegan2_checkpoint), data=str(tiny_videos),
                      out=str(tmp_path / "run"), checkpointing=True, iterations=1, **TINY)
    with pytest.raises(MocohdError, match="cannot checkpoint"):
        Trainer(cfg, DistContext(0, 1, 0, torch.device("cpu")), progress=False)
