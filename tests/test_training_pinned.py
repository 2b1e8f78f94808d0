"""Fixed-seed training runs give the weights they gave before the training code was restructured.

Each loop (motion in-domain with every optional term on, cross-domain, StyleGAN2 pre-training, the
inversion encoder) runs a few tiny steps on one thread and its weights are compared with reference weights
kept in tests/data/pins/. Float kernels round differently from one CPU to the next, even with the same torch
and the same kernel set (CI's machine differed from the writer's in the last bits), so the weights must agree to
PIN_TOLERANCE, well below what a changed computation gives (one extra optimiser step of the pre-training moves
its weights by 4e-3, a 10% larger encoder learning rate by 0.27).
A meant change: rerun with MOCOHD_WRITE_PINS=1, check why the weights moved, commit the new references.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from mocohd_cli.infra.files import read_safetensors
from mocohd_cli.models.backbone import load_backbone
from mocohd_cli.models.identity import IdentityEncoder, write_identity_encoder
from mocohd_cli.models.latent_prior import write_projections
from mocohd_cli.training import TrainConfig, train

from test_train import TINY

DATA = Path(__file__).parent / "data"

PIN_DIR = DATA / "pins"
# Largest weight difference allowed per loop between machines whose float kernels differ. Measured against the
# references (written on an AVX512 machine): another AVX512 machine 1.3e-6 / 1.3e-6 / 1.4e-4 / 5.3e-4 (in-domain /
# cross-domain / pretrain / encoder); ATEN_CPU_CAPABILITY=avx2 at most 1.3e-6, =default at most 2.7e-4. The
# encoder's batch-norm statistics carry rounding further, and a 10% larger encoder learning rate moves it by 0.27.
PIN_TOLERANCE = {"in-domain": 1e-3, "cross-domain": 1e-3, "pretrain": 1e-3, "encoder": 1e-2}


def this_machine() -> dict[str, str]:
    return {"torch": torch.__version__.split("+")[0], "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def fingerprint(tensor: torch.Tensor, size: int = 4096) -> torch.Tensor:
    """At most `size` evenly strided values of a tensor: the references of big models stay small, and a changed
    computation moves every value."""
    flat = tensor.detach().float().flatten()
    return flat[::max(1, flat.numel() // size)][:size].contiguous()


def check_pin(name: str, tensors: dict[str, torch.Tensor], *, write: bool = True) -> None:
    """`tensors` against the reference weights of loop `name`, within PIN_TOLERANCE. MOCOHD_WRITE_PINS=1 writes
    the references first (not for runs that only reuse another loop's pin: write=False)."""
    path = PIN_DIR / f"{name}.safetensors"
    tensors = {key: fingerprint(value) for key, value in tensors.items()}
    if write and os.environ.get("MOCOHD_WRITE_PINS"):
        PIN_DIR.mkdir(exist_ok=True)
        save_file(tensors, str(path), metadata=this_machine())
    reference, machine = read_safetensors(path)
    assert sorted(tensors) == sorted(reference), f"{name}: the run's weights have other names than the pinned ones"
    worst = max((tensors[key] - reference[key]).abs().max().item() for key in reference)
    if os.environ.get("MOCOHD_PRINT_PINS"):
        print(f"PIN {name}: largest difference {worst:.3g}")
    assert worst <= PIN_TOLERANCE[name], f"{name}: the fixed-seed run's weights moved by {worst:.3g} (pinned on {machine})"


@pytest.fixture
def projections(tmp_path, tiny_stylegan2_checkpoint):
    backbone = load_backbone("stylegan2", tiny_stylegan2_checkpoint)
    gen = torch.Generator().manual_seed(0)
    walks = backbone.sample_latent(6, rng=gen)[:, None] + 0.3 * torch.randn(6, 8, backbone.latent_dim,
                                                                           generator=gen).cumsum(1)
    return write_projections(tmp_path / "projected.safetensors", walks, backbone_sha256=backbone.checkpoint_sha256,
                             time_step=2, size=16, data="videos", psnr=30.0)


@pytest.fixture
def identity_encoder(tmp_path):
    torch.manual_seed(3)
    return write_identity_encoder(tmp_path / "identity.safetensors", IdentityEncoder().eval(), real_distance=0.05,
                                  data="videos", videos=3, steps=1)


def test_in_domain_run_with_every_term_is_pinned(tiny_stylegan2_checkpoint, tiny_videos, projections,
                                                 identity_encoder, tmp_path):
    config = in_domain_config(tiny_stylegan2_checkpoint, tiny_videos, tmp_path / "run", projections, identity_encoder)
    result = train(config, progress=False)
    check_pin("in-domain", read_safetensors(result.motion_path)[0])


def test_cross_domain_run_is_pinned(tiny_stylegan2_checkpoint, tiny_videos, tmp_path):
    config = TrainConfig(mode="cross-domain", backbone="stylegan2", checkpoint=str(tiny_stylegan2_checkpoint),
                         data=str(tiny_videos), out=str(tmp_path / "run"),
                         **{**TINY, "iterations": 2, "g_steps": 2, "num_samples": 0, "image_d_channels": 4,
                            "queue_size": 16, "proj_dim": 16, "video_frame_size": 32})
    result = train(config, progress=False)
    check_pin("cross-domain", read_safetensors(result.motion_path)[0])


def test_pretrain_run_is_pinned(tmp_path):
    from mocohd_cli.data.domains import make_dataset
    from mocohd_plugins.stylegan2.pretrain import PretrainConfig, pretrain

    data = make_dataset("faces", tmp_path / "faces", videos=2, frames=4, size=16)
    config = PretrainConfig(data=str(data), out=str(tmp_path / "run"), size=16, style_dim=32, n_mlp=2,
                            channels={4: 32, 8: 16, 16: 16}, batch_size=4, steps=3, sample_every=100,
                            checkpoint_minutes=1e6, device="cpu")
    path = pretrain(config)
    check_pin("pretrain", read_safetensors(path)[0])


def test_encoder_run_is_pinned(tiny_stylegan2_checkpoint, tmp_path):
    from mocohd_cli.workflows.encoder import EncoderSettings, train_encoder

    settings = EncoderSettings(checkpoint=str(tiny_stylegan2_checkpoint), out=str(tmp_path / "e.safetensors"),
                               arch="resnet10t", steps=3, batch_size=4, lr=3e-3, log_every=1, device="cpu")
    result = train_encoder(settings)
    check_pin("encoder", read_safetensors(result.path)[0])


def in_domain_config(checkpoint, data, out, projections, identity_encoder, **overrides) -> TrainConfig:
    return TrainConfig(backbone="stylegan2", checkpoint=str(checkpoint), data=str(data), out=str(out),
                       **{**TINY, "iterations": 3, "g_steps": 2, "num_samples": 0, "pca_source": "videos",
                          "latent_motion": str(projections), "w_latent_motion": 1.0, "w_walk": 1.0,
                          "walk_batch": 8, "w_identity": 1.0, "identity_encoder": str(identity_encoder),
                          "identity_horizon": 6, "image_horizon": 6, "w_drift": 1.0, "drift_momentum": 0.5,
                          "drift_horizon": 6, "motion_feedback": True, **overrides})


def test_a_state_written_before_the_engine_resumes_to_the_same_weights(tiny_stylegan2_checkpoint, tiny_videos,
                                                                        projections, identity_encoder, tmp_path):
    """tests/data/pre_engine_state.pt: step 2 of the pinned in-domain run, written by the trainer the engine
    replaced. Resumed to step 3, it gives the pinned weights of the uninterrupted run."""
    import shutil

    run = tmp_path / "run"
    (run / "state").mkdir(parents=True)
    shutil.copy(DATA / "pre_engine_state.pt", run / "state" / "latest.pt")
    config = in_domain_config(tiny_stylegan2_checkpoint, tiny_videos, run, projections, identity_encoder,
                              resume=True)
    result = train(config, progress=False)
    assert result.steps == 3
    # the state was written on another machine: its first two steps ran on that machine's float kernels
    check_pin("in-domain", read_safetensors(result.motion_path)[0], write=False)
