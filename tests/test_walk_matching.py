"""Walk matching (`--w-walk`): the energy distance between generated and projected walks, and its windows."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mocohd_cli.infra.distributed import init_distributed
from mocohd_cli.infra.errors import MocohdError
from mocohd_cli.models.backbone import load_backbone
from mocohd_cli.models.walk_matching import energy_distance, walk_windows
from mocohd_cli.training.trainer import Trainer

from test_train import config


def test_energy_distance_is_near_zero_for_one_distribution_and_grows_with_a_shift():
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(400, 3, 4, generator=gen), torch.randn(400, 3, 4, generator=gen)
    same = energy_distance(x, y).item()
    shifted = energy_distance(x + 1.0, y).item()
    assert abs(same) < 0.1 and shifted > 1.0
    assert energy_distance(x, x).item() == pytest.approx(0.0, abs=1e-4)


def test_a_walk_every_video_shares_is_far_from_real_walks_even_at_their_size():
    """The failure it is for: generated walks that all go the same way, however large, are far from real
    walks that each go their own way; spreading them out (at the same size) brings them close."""
    gen = torch.Generator().manual_seed(1)
    real = torch.randn(300, 5, 8, generator=gen)
    shared = torch.randn(1, 5, 8, generator=gen).expand(300, -1, -1)
    spread = torch.randn(300, 5, 8, generator=gen)
    assert energy_distance(shared, real) > 10 * energy_distance(spread, real)


def test_the_gradient_pushes_collapsed_walks_apart():
    gen = torch.Generator().manual_seed(2)
    real = torch.randn(200, 4, 6, generator=gen)
    walks = (0.01 * torch.randn(200, 4, 6, generator=gen)).requires_grad_(True)
    optimiser = torch.optim.SGD([walks], lr=20.0)
    for _ in range(200):
        optimiser.zero_grad()
        energy_distance(walks, real).backward()
        optimiser.step()
    spread = walks.detach().flatten(1).std(0).mean().item()
    assert 0.7 < spread < 1.3  # real walks: 1 along each axis


def test_windows_are_displacements_from_their_own_first_frame():
    walk = torch.arange(1, 6, dtype=torch.float32)[None, :, None].repeat(2, 1, 3)  # w_t - w_0 = t, t = 1..5
    windows = walk_windows(walk, 3, torch.tensor([0, 2]))
    assert windows.shape == (2, 2, 3)
    assert torch.equal(windows[0, :, 0], torch.tensor([1.0, 2.0]))  # frames 0..2 seen from frame 0
    assert torch.equal(windows[1, :, 0], torch.tensor([1.0, 2.0]))  # frames 2..4 seen from frame 2
    assert torch.equal(walk_windows(walk, 6, torch.tensor([0, 0])), walk)
    with pytest.raises(ValueError, match="starts"):
        walk_windows(walk, 3, torch.tensor([0, 4]))
    with pytest.raises(ValueError, match="does not fit"):
        walk_windows(walk, 7, torch.tensor([0, 0]))


def _projections(tmp_path, checkpoint, videos=6, frames=6):
    from mocohd_cli.models.latent_prior import write_projections

    backbone = load_backbone("stylegan2", checkpoint)
    gen = torch.Generator().manual_seed(0)
    walks = backbone.sample_latent(videos)[:, None] + torch.randn(videos, frames, backbone.latent_dim,
                                                                  generator=gen).cumsum(1)
    return write_projections(tmp_path / "projected.safetensors", walks, backbone_sha256=backbone.checkpoint_sha256,
                             time_step=2, size=16, data="videos", psnr=30.0)


def test_walk_matching_trains_towards_the_projected_walks(tiny_stylegan2_checkpoint, tiny_videos, tmp_path):
    projections = _projections(tmp_path, tiny_stylegan2_checkpoint)
    settings = {"sample_every": 100, "num_samples": 0, "g_steps": 1, "pca_source": "videos", "lr": 5e-3,
                "latent_motion": str(projections), "w_walk": 10.0, "walk_batch": 64, "drift_horizon": 8}
    trainer = Trainer(config(tiny_stylegan2_checkpoint, tiny_videos, tmp_path / "run", iterations=30, **settings),
                      init_distributed("cpu"), progress=False)
    # windows of the projections' length (6 frames), one per projected video, in the basis' units
    assert trainer.term("walk").bank.shape == (6, 5, 8)

    def distance() -> float:
        with torch.no_grad():
            rng = torch.Generator().manual_seed(5)
            w0 = trainer.backbone.sample_latent(256, rng=rng)
            walks = trainer.motion.rollout(w0, 6, rng=rng).displacements
            return energy_distance(walks, trainer.term("walk").bank).item()

    before = distance()
    result = trainer.fit()
    assert "g/walk" in result.losses and np.isfinite(result.losses["g/walk"])
    assert distance() < 0.7 * before  # measured: 5.2 -> 3.1


def test_walk_windows_longer_than_the_projections_are_refused(tiny_stylegan2_checkpoint, tiny_videos, tmp_path):
    projections = _projections(tmp_path, tiny_stylegan2_checkpoint)
    with pytest.raises(MocohdError, match="longer than the projected videos") as error:
        Trainer(config(tiny_stylegan2_checkpoint, tiny_videos, tmp_path / "run", iterations=1, w_walk=1.0,
                       latent_motion=str(projections), walk_frames=7, drift_horizon=8), init_distributed("cpu"),
                progress=False)
    assert "projected.safetensors" in str(error.value)


@pytest.mark.parametrize("overrides, message", [({"w_walk": -1.0}, "--w-walk"), ({"walk_frames": 1}, "--walk-frames"),
                                                ({"walk_batch": 0}, "--walk-batch")])
def test_bad_walk_settings_are_refused_before_training(overrides, message, tiny_stylegan2_checkpoint, tiny_videos,
                                                       tmp_path):
    with pytest.raises(MocohdError, match=message):
        config(tiny_stylegan2_checkpoint, tiny_videos, tmp_path / "run", **overrides).validate()
