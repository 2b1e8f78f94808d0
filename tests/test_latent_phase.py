"""The latent phase (issue 35): trains the motion generator on projected walks given their starts, latents only."""
from __future__ import annotations

import copy
import io

import pytest
import torch

from mocohd_cli.models.motion import MotionGenerator
from mocohd_cli.models.trajectory import (ConditionalTrajectoryDiscriminator, ContentWhitener, energy_score,
                                          matching_d_loss, shuffled)
from mocohd_cli.training.latent_phase import LatentPhase, LatentPhaseSettings

D, N_PCA = 16, 8


def toy_bank(videos: int = 12, frames: int = 6, seed: int = 0) -> torch.Tensor:
    """Walks whose direction depends on where they start: video v starts at a random w_0 and moves a fixed
    step along +e_0 or -e_0 depending on the sign of w_0's first coordinate."""
    g = torch.Generator().manual_seed(seed)
    w0 = torch.randn(videos, D, generator=g)
    direction = torch.zeros(videos, D)
    direction[:, 0] = torch.sign(w0[:, 0])
    t = torch.arange(frames, dtype=torch.float32)[None, :, None]
    return w0[:, None] + 0.3 * t * direction[:, None] + 0.01 * torch.randn(videos, frames, D, generator=g)


def toy_motion(seed: int = 0) -> MotionGenerator:
    torch.manual_seed(seed)
    return MotionGenerator(D, h_dim=16, n_pca=N_PCA, feedback=True)


def test_energy_score_prefers_the_true_conditional_law():
    g = torch.Generator().manual_seed(0)
    target = torch.randn(512, 4, generator=g)
    right = torch.randn(512, 8, 4, generator=g)
    shifted = right + 1.0
    collapsed = torch.zeros(512, 8, 4)  # the mean, without spread
    assert energy_score(right, target) < energy_score(shifted, target)
    assert energy_score(right, target) < energy_score(collapsed, target)
    with pytest.raises(ValueError):
        energy_score(right[:, :1], target)


def test_phase_reduces_its_loss_on_a_toy_bank():
    bank = toy_bank()
    phase = LatentPhase(toy_motion(), bank, LatentPhaseSettings(iterations=200, lr=3e-3, batch=16, samples=4,
                                                                frames=5, w_mi=0.0), "cpu")
    rng = torch.Generator().manual_seed(1)
    scores = [float(phase.step(rng)["score"]) for _ in range(200)]
    assert phase.done and phase.step_count == 200
    first, last = sum(scores[:20]) / 20, sum(scores[-20:]) / 20
    assert last < 0.6 * first, (first, last)


def test_conditional_discriminator_separates_real_from_shuffled_walks():
    bank = toy_bank(videos=32)
    motion = toy_motion()
    walks = ((bank[:, 1:] - bank[:, :1]) @ motion.pca_components.T) / motion.pca_stdev
    whitener = ContentWhitener(bank[:, 0], 8)
    content = whitener(bank[:, 0])
    disc = ConditionalTrajectoryDiscriminator(whitener.dim, walks.shape[1], N_PCA, width=64)
    opt = torch.optim.Adam(disc.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    index = torch.arange(32)
    for _ in range(300):
        noise = 0.3 * torch.randn(walks.shape, generator=g)
        loss = matching_d_loss(disc(content, walks), disc(content, noise), disc(content, walks[shuffled(index, g)]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        real = disc(content, walks)
        # pair every start with the walk of a video that moves the other way
        opposite = torch.tensor([int(torch.nonzero(torch.sign(bank[:, 0, 0]) != torch.sign(bank[i, 0, 0]))[0])
                                 for i in range(32)])
        mismatched = disc(content, walks[opposite])
    assert real.mean() > 0.7 and mismatched.mean() < 0.3, (real.mean(), mismatched.mean())


def test_shuffled_moves_every_entry():
    index = torch.arange(10)
    out = shuffled(index, torch.Generator().manual_seed(0))
    assert sorted(out.tolist()) == list(range(10)) and bool((out != index).all())


@pytest.mark.parametrize("adversarial", [0.0, 0.5])
def test_state_dict_round_trip_resumes_bit_identically(adversarial):
    bank = toy_bank()
    settings = LatentPhaseSettings(iterations=10, lr=1e-3, batch=4, samples=3, frames=4, w_adversarial=adversarial,
                                   content_dim=4, d_width=32)
    first = LatentPhase(toy_motion(), bank, settings, "cpu")
    rng = torch.Generator().manual_seed(3)
    for _ in range(5):
        first.step(rng)
    saved_motion = {k: v.clone() for k, v in first.motion.state_dict().items()}
    buffer = io.BytesIO()
    torch.save({"phase": first.state_dict(), "rng": rng.get_state()}, buffer)
    for _ in range(5):
        first.step(rng)

    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    motion = toy_motion(seed=99)  # other weights: all of them must come from the saved state
    motion.load_state_dict(copy.deepcopy(saved_motion))
    second = LatentPhase(motion, bank, settings, "cpu")
    second.load_state_dict(state["phase"])
    assert second.step_count == 5
    rng2 = torch.Generator()
    rng2.set_state(state["rng"])
    for _ in range(5):
        second.step(rng2)
    for key, value in first.motion.state_dict().items():
        assert torch.equal(value, second.motion.state_dict()[key]), key
    if adversarial:
        for key, value in first.discriminator.state_dict().items():
            assert torch.equal(value, second.discriminator.state_dict()[key]), key


def test_a_step_renders_nothing(monkeypatch):
    from mocohd_cli.models import backbone

    def refuse(*args, **kwargs):
        raise AssertionError("the latent phase rendered a frame")

    monkeypatch.setattr(backbone.ImageGenerator, "synthesize", refuse)
    try:
        from mocohd_plugins.stylegan2 import generator as stylegan2
        monkeypatch.setattr(stylegan2.StyleGAN2Generator, "synthesize", refuse, raising=False)
    except ImportError:
        pass
    phase = LatentPhase(toy_motion(), toy_bank(), LatentPhaseSettings(iterations=2, batch=4, samples=2, frames=4,
                                                                      w_adversarial=1.0, content_dim=4), "cpu")
    losses = phase.step(torch.Generator().manual_seed(0))
    assert {"score", "mi", "adversarial", "d"} <= set(losses)
    assert all(torch.isfinite(v) for v in losses.values())


def test_bad_settings_and_banks_are_refused():
    with pytest.raises(ValueError):
        LatentPhaseSettings(samples=1)
    with pytest.raises(ValueError):
        LatentPhase(toy_motion(), toy_bank(frames=3), LatentPhaseSettings(frames=4), "cpu")
    with pytest.raises(ValueError):
        LatentPhase(toy_motion(), torch.zeros(4, 6, D + 1), LatentPhaseSettings(frames=4), "cpu")


def test_long_walk_term_penalises_walks_that_wander_past_the_window():
    bank = toy_bank(videos=32, frames=6)
    phase = LatentPhase(toy_motion(), bank, LatentPhaseSettings(frames=4, horizon=12, batch=4, samples=2), "cpu")
    data = ((bank[:, 1:] - bank[:, :1]) @ phase.motion.pca_components.T) / phase.motion.pca_stdev  # [32, 5, n]
    g = torch.Generator().manual_seed(0)
    like_data = data[torch.randint(0, 32, (256,), generator=g)][:, torch.randint(0, 5, (11,), generator=g)]
    wandering = like_data * torch.arange(1, 12).float()[None, :, None]  # growing with time, as a random walk
    near = phase.long_walk_loss(like_data, torch.Generator().manual_seed(1))
    far = phase.long_walk_loss(wandering, torch.Generator().manual_seed(1))
    assert far > 10 * max(float(near), 1e-3), (near, far)
    losses = phase.step(torch.Generator().manual_seed(2))
    assert "horizon" in losses and torch.isfinite(losses["horizon"])
