"""`--image-horizon`: the image discriminator also judges frames past the clip, on both sides of the game."""
from __future__ import annotations

import pytest
import torch

from mocohd_cli.infra.distributed import init_distributed
from mocohd_cli.infra.errors import MocohdError
from mocohd_cli.models.identity import IdentityEncoder, write_identity_encoder
from mocohd_cli.training.objectives import InDomainObjective
from mocohd_cli.training.objectives.in_domain import fake_pairs
from mocohd_cli.training.trainer import Trainer

from test_train import config


def test_later_frames_are_paired_with_their_own_first_frame():
    fake = torch.arange(2 * 3)[:, None, None, None].float().view(2, 3, 1, 1, 1).expand(-1, -1, 3, 2, 2)
    later = 100 + torch.arange(2 * 2).float().view(2, 2, 1, 1, 1).expand(-1, -1, 3, 2, 2)
    pairs = fake_pairs(fake, torch.tensor([1]), later)
    assert pairs.shape == (2 + 4, 6, 2, 2)
    # the clip's pairs first: (frame 0, frame 1) of each video
    assert pairs[0, 0, 0, 0] == 0 and pairs[0, 3, 0, 0] == 1 and pairs[1, 0, 0, 0] == 3 and pairs[1, 3, 0, 0] == 4
    # then each later frame beside its own video's frame 0
    assert [pairs[i, 0, 0, 0].item() for i in range(2, 6)] == [0, 0, 3, 3]
    assert [pairs[i, 3, 0, 0].item() for i in range(2, 6)] == [100, 101, 102, 103]
    assert torch.equal(fake_pairs(fake, torch.tensor([1]), None), pairs[:2])


class RecordingObjective(InDomainObjective):
    def __init__(self, cfg, backbone):
        super().__init__(cfg, backbone)
        self.seen = {"g": [], "d": []}

    def g_loss(self, *args, later=None, **kwargs):
        self.seen["g"].append(None if later is None else tuple(later.shape))
        return super().g_loss(*args, later=later, **kwargs)

    def d_loss(self, *args, later=None, **kwargs):
        self.seen["d"].append(None if later is None else tuple(later.shape))
        return super().d_loss(*args, later=later, **kwargs)


LATER = (2, 2, 3, 16, 16)  # batch 2, 2 frames past the clip each, 16 px


@pytest.mark.parametrize("horizons, expected", [
    ({}, None), ({"image_horizon": 8}, LATER),
    ({"image_horizon": 8, "identity_horizon": 8, "w_identity": 1.0}, LATER),
    ({"identity_horizon": 8, "w_identity": 1.0}, None),  # the identity loss's frames are not the discriminator's
])
def test_the_image_discriminator_sees_frames_past_the_clip_on_both_sides(horizons, expected, tiny_stylegan2_checkpoint,
                                                                         tiny_videos, tmp_path):
    if horizons.get("w_identity"):  # an untrained encoder: the dataset is too small to train one
        horizons["identity_encoder"] = str(write_identity_encoder(tmp_path / "id.safetensors", IdentityEncoder(),
                                                                  real_distance=0.0, data="d", videos=3, steps=0))
    cfg = config(tiny_stylegan2_checkpoint, tiny_videos, tmp_path / "run", iterations=1, g_steps=1, sample_every=100,
                 num_samples=0, **horizons)
    trainer = Trainer(cfg, init_distributed("cpu"), objective_factory=RecordingObjective, progress=False)
    result = trainer.fit()
    assert trainer.objective.seen == {"g": [expected], "d": [expected]}
    assert all(torch.isfinite(torch.tensor(v)) for v in result.losses.values())


@pytest.mark.parametrize("overrides, message", [
    ({"image_horizon": 3}, "--image-horizon must be at least --frames"),
    ({"image_horizon": 8, "identity_horizon": 6, "w_identity": 1.0}, "differ"),
    ({"image_horizon": 8, "mode": "cross-domain"}, "in-domain"),
])
def test_bad_image_horizons_are_refused(overrides, message, tiny_stylegan2_checkpoint, tiny_videos, tmp_path):
    with pytest.raises(MocohdError, match=message):
        config(tiny_stylegan2_checkpoint, tiny_videos, tmp_path / "run", **overrides).validate()
