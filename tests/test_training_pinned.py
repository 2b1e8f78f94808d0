"""Fixed-seed training runs give the weights they gave before the training code was restructured.

Each loop (motion in-domain with every optional term on, cross-domain, StyleGAN2 pre-training, the
inversion encoder) runs a few tiny steps on one thread, and the sha256 of its weights is compared with
the value pinned when the loops were first written against the engine's predecessor. A change that
alters what a run computes (an extra random draw, a reordered loss, a changed default) changes a hash:
if it is meant, rerun with MOCOHD_PRINT_PINS=1, check why, and pin the new value in the same commit.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import torch

from mocohd_cli.infra.files import read_safetensors
from mocohd_cli.models.backbone import load_backbone
from mocohd_cli.models.identity import IdentityEncoder, write_identity_encoder
from mocohd_cli.models.latent_prior import write_projections
from mocohd_cli.training import TrainConfig, train

from test_train import TINY

DATA = Path(__file__).parent / "data"

PINS = {
    "in-domain": "dfe354574b9c0236a852155a4b9eeb0368b26ab517d4ef2b48a6b3fbb8868151",
    "cross-domain": "ffa24add2cc9e7e992fb732a04acd69a34614b5be3021aaf77e3cea5734802e3",
    "pretrain": "e750e198a5815634bfe8b697a8d69813f26b758094152c097f1f4741dca7488c",
    "encoder": "127fe1298ba220cecaa53fbdd412b54630140f07da655dc9e6881daf199358c1",
}


def weights_sha256(tensors: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for name in sorted(tensors):
        digest.update(name.encode())
        digest.update(tensors[name].detach().float().contiguous().numpy().tobytes())
    return digest.hexdigest()


def check_pin(name: str, tensors: dict[str, torch.Tensor]) -> None:
    value = weights_sha256(tensors)
    if os.environ.get("MOCOHD_PRINT_PINS"):
        print(f"PIN {name} {value}")
    assert value == PINS[name], f"{name}: the fixed-seed run's weights changed"


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
    check_pin("in-domain", read_safetensors(result.motion_path)[0])
