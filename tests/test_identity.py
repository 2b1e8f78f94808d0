"""The identity encoder and the identity loss (`--w-identity`, mocohd_cli/models/identity.py)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from mocohd_cli.infra.distributed import init_distributed
from mocohd_cli.infra.errors import MocohdError
from mocohd_cli.infra.files import read_safetensors, write_safetensors
from mocohd_cli.models.identity import (IdentityEncoder, identity_loss, read_identity_encoder, train_identity_encoder,
                                        within_video_distance, write_identity_encoder)
from mocohd_cli.training import train
from mocohd_cli.training.identity import identity_encoder_for
from mocohd_cli.training.trainer import Trainer

from test_train import config


def coloured_videos(n: int, frames: int = 6, size: int = 32, seed: int = 0) -> torch.Tensor:
    """uint8 [n, frames, 3, size, size]: each video one random background colour and shape colour (its
    identity), a square that moves across it (its motion)."""
    rng = np.random.default_rng(seed)
    videos = np.zeros((n, frames, size, size, 3), np.uint8)
    for v in range(n):
        background, square = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        videos[v] = background
        for t in range(frames):
            x, y = rng.integers(0, size - 10, 2)
            videos[v, t, y:y + 10, x:x + 10] = square
    return torch.from_numpy(videos).permute(0, 1, 4, 2, 3).contiguous()


def to_signed(videos: torch.Tensor) -> torch.Tensor:
    return videos.float() / 127.5 - 1.0


def test_the_encoder_learns_what_stays_the_same_within_a_video_and_sees_it_in_new_videos():
    encoder, distance = train_identity_encoder(coloured_videos(16), steps=60, seed=0)
    assert not any(p.requires_grad for p in encoder.parameters()) and not encoder.training
    held_out = to_signed(coloured_videos(8, seed=1))        # identities it never saw
    with torch.no_grad():
        within = within_video_distance(encoder, held_out).mean()
        # the same motion, another video's identity from frame 1 on
        swapped = torch.cat([held_out[:, :1], held_out.roll(1, dims=0)[:, 1:]], 1)
        across = within_video_distance(encoder, swapped).mean()
    assert 0.0 <= distance < 0.2 and within < 0.2
    assert across > 3 * within


def test_training_is_reproducible_and_refuses_too_few_videos():
    videos = coloured_videos(5)
    a, da = train_identity_encoder(videos, steps=3, seed=4)
    b, db = train_identity_encoder(videos, steps=3, seed=4)
    assert da == db and all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    with pytest.raises(ValueError, match="at least 4 videos"):
        train_identity_encoder(videos[:3], steps=1)


def test_the_loss_is_a_hinge_at_the_real_videos_distance_and_reaches_the_frames():
    torch.manual_seed(0)
    encoder = IdentityEncoder().eval().requires_grad_(False)
    still = to_signed(coloured_videos(2))[:, :1].repeat(1, 4, 1, 1, 1)
    assert identity_loss(encoder, still, 0.0) < 1e-6                  # frames identical to frame 0
    moving = to_signed(coloured_videos(2)).requires_grad_(True)
    distance = within_video_distance(encoder, moving).mean().item()
    assert distance > 0
    assert identity_loss(encoder, moving, distance + 0.5) == 0.0     # no further than the real videos: free
    loss = identity_loss(encoder, moving, 0.0)
    loss.backward()
    assert loss > 0 and moving.grad.abs().sum() > 0
    # frames of another size are resized to the encoder's
    assert within_video_distance(encoder, torch.nn.functional.interpolate(
        moving.detach().flatten(0, 1), size=48).view(2, 6, 3, 48, 48)).shape == (2, 5)


def test_encoder_file_round_trip_and_clear_errors(tmp_path):
    torch.manual_seed(0)
    encoder = IdentityEncoder().eval()
    path = write_identity_encoder(tmp_path / "id.safetensors", encoder, real_distance=0.02, data="d", videos=5,
                                  steps=3)
    loaded, distance = read_identity_encoder(path)
    frames = to_signed(coloured_videos(1))[0]
    assert distance == 0.02 and torch.equal(loaded(frames), encoder(frames).detach())
    tensors, meta = read_safetensors(path)
    for name, bad_tensors, bad_meta, message in [
            ("format", tensors, {**meta, "format": "other"}, "not an identity encoder"),
            ("distance", tensors, {**meta, "real_distance": "7"}, "outside"),
            ("weights", {k: v for k, v in tensors.items() if k != "head.weight"}, meta, "do not fit"),
            ("shape", {**tensors, "head.bias": torch.zeros(3)}, meta, "wrong shapes"),
            ("nan", {**tensors, "head.bias": torch.full_like(tensors["head.bias"], float("nan"))}, meta, "NaN")]:
        bad = write_safetensors(tmp_path / f"{name}.safetensors", bad_tensors, bad_meta)
        with pytest.raises(MocohdError, match=message) as info:
            read_identity_encoder(bad)
        assert str(bad) in str(info.value)


def frame_folder_videos(root, videos: torch.Tensor):
    for v, video in enumerate(videos):
        folder = root / f"video{v}"
        folder.mkdir(parents=True)
        for t, frame in enumerate(video):
            Image.fromarray(frame.permute(1, 2, 0).numpy()).save(folder / f"img_{t:03d}.png")
    return root


def test_the_training_videos_encoder_is_made_once_and_cached(tmp_path, monkeypatch):
    data = frame_folder_videos(tmp_path / "data", coloured_videos(5, frames=8))
    first, distance = identity_encoder_for(str(data), frames=4, time_step=1, steps=2)
    from mocohd_cli.training import identity

    monkeypatch.setattr(identity, "train_identity_encoder", lambda *a, **k: pytest.fail("trained again"))
    again, same = identity_encoder_for(str(data), frames=4, time_step=1, steps=2)
    assert same == distance and all(torch.equal(a, b) for a, b in zip(first.state_dict().values(),
                                                                       again.state_dict().values()))
    with pytest.raises(MocohdError, match="--w-identity 0"):
        identity_encoder_for(str(frame_folder_videos(tmp_path / "few", coloured_videos(3, frames=8))), frames=4,
                             time_step=1, steps=2)


def test_training_with_the_identity_loss_resumes_exactly(tiny_stylegan2_checkpoint, tiny_videos, tmp_path):
    torch.manual_seed(0)
    encoder = write_identity_encoder(tmp_path / "id.safetensors", IdentityEncoder(), real_distance=0.0, data="d",
                                     videos=3, steps=0)
    settings = {"iterations": 4, "checkpoint_every": 2, "sample_every": 100, "num_samples": 0, "g_steps": 1,
                "w_identity": 1.0, "identity_encoder": str(encoder)}
    trainer = Trainer(config(tiny_stylegan2_checkpoint, tiny_videos, tmp_path / "one", **settings),
                      init_distributed("cpu"), progress=False)
    result = trainer.fit()
    assert result.losses["g/identity"] > 0 and np.isfinite(result.losses["g/identity"])

    full = train(config(tiny_stylegan2_checkpoint, tiny_videos, tmp_path / "full", **settings), progress=False)
    halves = tmp_path / "halves"
    train(config(tiny_stylegan2_checkpoint, tiny_videos, halves, **{**settings, "iterations": 2}), progress=False)
    # the state's encoder is the one used on resume, even where the file has changed since
    write_identity_encoder(encoder, IdentityEncoder(), real_distance=0.5, data="d", videos=3, steps=0)
    resumed = train(config(tiny_stylegan2_checkpoint, tiny_videos, halves, resume=True, **settings), progress=False)
    a, _ = read_safetensors(full.motion_path)
    b, _ = read_safetensors(resumed.motion_path)
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(MocohdError, match="w_identity"):
        train(config(tiny_stylegan2_checkpoint, tiny_videos, halves, resume=True,
                     **{**settings, "iterations": 6, "w_identity": 2.0}), progress=False)


def test_the_shipped_faces_encoder_tells_a_face_kept_from_a_face_changed():
    """The in-domain example's encoder (mocohd_cli/assets), on rendered faces videos it never saw."""
    from mocohd_cli.evaluation.readers import render_training_set
    from mocohd_cli.workflows import builtin

    encoder, distance = read_identity_encoder(builtin.ASSETS / builtin.identity_file("faces"))
    frames, *_ = render_training_set("faces", seed=123_456, n_videos=6, n_frames=15, size=64)
    real = to_signed(frames[:, ::2])
    swapped = torch.cat([real[:, :1], real.roll(1, dims=0)[:, 1:]], 1)
    with torch.no_grad():
        within, across = (within_video_distance(encoder, v).mean().item() for v in (real, swapped))
    assert distance < 0.05 and within < 0.1 and across > 0.5


def test_the_identity_horizon_judges_frames_past_the_clip(tiny_stylegan2_checkpoint, tiny_videos, tmp_path,
                                                         monkeypatch):
    torch.manual_seed(0)
    encoder = write_identity_encoder(tmp_path / "id.safetensors", IdentityEncoder(), real_distance=0.0, data="d",
                                     videos=3, steps=0)
    # the drift penalty's running estimate is sized for its own horizon (6): it fails if it sees the identity's 12
    settings = {"iterations": 2, "sample_every": 100, "num_samples": 0, "g_steps": 1, "w_identity": 1.0,
                "identity_encoder": str(encoder), "identity_horizon": 12, "w_drift": 1.0, "drift_horizon": 6,
                "drift_momentum": 0.9}
    trainer = Trainer(config(tiny_stylegan2_checkpoint, tiny_videos, tmp_path / "run", **settings),
                      init_distributed("cpu"), progress=False)
    rendered = []
    synthesize = trainer.backbone.synthesize
    monkeypatch.setattr(trainer.backbone, "synthesize",
                        lambda latents, **kw: rendered.append(latents.detach()) or synthesize(latents, **kw))
    fake, rollout, later = trainer.generate(trainer.rollout_local, 3, 12, extra_frames=2, extra_stop=10)
    assert fake.shape[1] == 4 and later.shape[:2] == (3, 2) and later.shape[2:] == fake.shape[2:]
    latents = rollout.latents.detach()
    assert torch.equal(rendered[0][:, :4], latents[:, :4])
    for video in range(3):  # each extra frame is the video's own latent at a step past the clip, before the stop
        for extra in rendered[0][video, 4:]:
            steps = [t for t in range(12) if torch.equal(latents[video, t], extra)]
            assert steps and 4 <= steps[0] < 10
    result = trainer.fit()
    assert np.isfinite(result.losses["g/identity"]) and np.isfinite(result.losses["g/drift"])
    for bad, match in (({"identity_horizon": 3}, "at least --frames"),
                       ({"w_identity": 0.0}, "--w-identity")):
        with pytest.raises(MocohdError, match=match):
            config(tiny_stylegan2_checkpoint, tiny_videos, tmp_path / "bad", **{**settings, **bad}).validate()
