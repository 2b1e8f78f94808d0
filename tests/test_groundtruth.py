"""Ground-truth metrics (issue 10): factor readers and the metrics built on them.

The metric tests use the shipped 64 px readers on small rendered sets; the training, file and
cache tests use a tiny reader trained for a few seconds."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mocohd_cli.data.domains import get_domain
from mocohd_cli.evaluation import groundtruth as gt
from mocohd_cli.evaluation import readers as rd
from mocohd_cli.infra.errors import MocohdError

SHIPPED = ("faces", "robots", "sky")
# held-out R^2 every shipped reader must reach on these factors (the ones the metrics rest on)
R2_FLOOR = {
    "faces": {"yaw": 0.9, "pitch": 0.8, "roll": 0.9, "mouth_open": 0.8, "eye_open": 0.6, "skin_r": 0.9,
              "hair_r": 0.9, "background_r": 0.9, "shirt_r": 0.9},
    "robots": {"yaw": 0.9, "pitch": 0.8, "roll": 0.9, "mouth_open": 0.8, "eye_open": 0.6, "metal_r": 0.9,
               "glow_r": 0.9, "background_r": 0.9},
    "sky": {"sun_x": 0.8, "sun_y": 0.8, "daylight": 0.8, "coverage": 0.7, "horizon": 0.8, "ground_g": 0.8},
}
TINY = {"n_videos": 24, "frames_per_video": 2, "heldout_videos": 8, "steps": 6, "batch_size": 16, "threads": 1,
        "arch": {"channels": [8, 16, 16, 16], "layers": [1, 1, 1, 1], "stem_width": 8, "stem_type": "deep"}}


@pytest.fixture(scope="module")
def tiny_reader():
    reader, r2 = rd.train_reader("sky", size=32, seed=3, workers=1, **TINY)
    return reader, r2


def shipped(name):
    if not rd.shipped_reader_path(name, 64).exists():
        pytest.fail(f"the {name} reader is not shipped in {rd.SHIPPED_DIR}")
    return rd.read_reader_file(rd.shipped_reader_path(name, 64))


@pytest.fixture(scope="module")
def faces_sets():
    """Two disjoint sets of 32 real 8-frame faces videos (seeds 101 and 202)."""
    a = gt.render_real("faces", 32, 8, 64, seed=101)
    b = gt.render_real("faces", 32, 8, 64, seed=202)
    return a, b


# ------------------------------------------------------------------------ Frechet distance

def test_frechet_distance_matches_an_independent_numpy_computation():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((300, 6)) @ rng.standard_normal((6, 6))
    b = rng.standard_normal((200, 6)) @ rng.standard_normal((6, 6)) + 0.5
    mu1, s1 = a.mean(0), np.cov(a, rowvar=False)
    mu2, s2 = b.mean(0), np.cov(b, rowvar=False)
    # tr sqrt(S1 S2) = sum of the square roots of the eigenvalues of S1 S2 (real and >= 0)
    eig = np.linalg.eigvals(s1 @ s2)
    expected = ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(eig.real.clip(0)).sum()
    assert gt.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9)
    assert gt.frechet_between(a, b) == pytest.approx(expected, rel=1e-9)
    assert gt.frechet_between(a, a) == pytest.approx(0.0, abs=1e-8)


def test_frechet_distance_survives_singular_covariances():
    rng = np.random.default_rng(1)
    few = rng.standard_normal((5, 20))            # 5 samples in 20 dimensions: rank 4
    constant = np.ones((7, 20))                   # zero covariance
    value = gt.frechet_between(few, constant)
    assert np.isfinite(value) and value > 0
    assert gt.frechet_between(constant, constant) == 0.0


# ------------------------------------------------------------------------------- readers

def test_tiny_reader_trains_and_round_trips_through_a_file(tiny_reader, tmp_path):
    reader, r2 = tiny_reader
    # the clouds' offset and the wind are not in any single frame: not read (rd.NOT_IN_A_FRAME)
    assert reader.motion_names == ["sun_x", "sun_y", "daylight"]
    assert reader.content_names == ["coverage", "horizon", "ground_r", "ground_g", "ground_b"]
    assert set(r2) == set(reader.factor_names) and reader.r2 == r2
    path = reader.save(tmp_path / "sky_32.safetensors")
    loaded = rd.read_reader_file(path)
    assert (loaded.domain, loaded.size, loaded.factor_names, loaded.r2) == ("sky", 32, reader.factor_names, r2)
    assert loaded.settings["steps"] == TINY["steps"] and loaded.settings["seed"] == 3
    frames = torch.from_numpy(get_domain("sky").video(5, 0, 3, 32).frames).permute(0, 3, 1, 2)
    a, b = reader.read(frames), loaded.read(frames)
    for name in reader.factor_names:  # the trained reader already holds fp16-rounded weights
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-6)
    torch.testing.assert_close(reader.features(frames), loaded.features(frames), rtol=0, atol=1e-6)


def test_training_is_seeded(tiny_reader):
    """Bit-identical for a seed and a thread count (another thread count changes the float sums)."""
    reader, r2 = tiny_reader
    again, r2_again = rd.train_reader("sky", size=32, seed=3, workers=1, **TINY)
    assert r2_again == r2
    for (k, v), w in zip(reader.state_dict().items(), again.state_dict().values()):
        assert torch.equal(v, w), k


def test_read_takes_videos_and_frames_of_other_sizes():
    reader = shipped("faces")
    video = get_domain("faces").video(7, 0, 4, 64)
    large = torch.from_numpy(get_domain("faces").video(7, 0, 4, 128).frames).permute(0, 3, 1, 2)
    small = torch.from_numpy(video.frames).permute(0, 3, 1, 2)
    at_64, at_128 = reader.read(small), reader.read(large)
    assert at_128["yaw"].shape == (4,)
    assert torch.allclose(at_64["yaw"], at_128["yaw"], atol=0.15)
    assert np.allclose(at_128["yaw"].numpy(), video.motion["yaw"], atol=0.2)
    clip = reader.read(large[None])                       # [N, T, 3, H, W]
    assert clip["mouth_open"].shape == (1, 4) and reader.features(large[None]).shape == (1, 4, reader.feature_dim)
    with pytest.raises(MocohdError):
        reader.read(large[:, :1])


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_readers_are_small_and_read_their_factors(name):
    path = rd.shipped_reader_path(name, 64)
    assert path.stat().st_size < 3_000_000
    reader = shipped(name)
    assert reader.domain == name and reader.size == 64
    for factor, floor in R2_FLOOR[name].items():
        assert reader.r2[factor] >= floor, (factor, reader.r2[factor])
    readable = reader.usable(reader.motion_names)
    assert readable and all(reader.r2[f] >= rd.MIN_R2 for f in readable)


def test_load_reader_prefers_shipped_then_cache_then_trains(monkeypatch, tmp_path):
    assert rd.load_reader("faces").r2 == shipped("faces").r2          # shipped
    cached = rd.cached_reader_path("sky", 24)
    assert not cached.exists()
    trained = rd.load_reader("sky", 24, train_settings={**TINY, "seed": 1, "workers": 1})
    assert cached.exists() and trained.size == 24
    monkeypatch.setattr(rd, "train_reader", lambda *a, **k: pytest.fail("should load from the cache"))
    assert rd.load_reader("sky", 24).r2 == trained.r2
    with pytest.raises(MocohdError):
        rd.load_reader("no-such-domain")


def test_a_damaged_reader_file_is_a_clear_error(tmp_path):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(b"not a safetensors file")
    with pytest.raises(MocohdError):
        rd.read_reader_file(path)


# ------------------------------------------------------------------------------- metrics

def static(videos):
    return videos[:, :1].expand_as(videos).contiguous()


def spliced(videos):
    """Frame t of video i taken from video i + t: every frame another identity (and pose)."""
    n, t = videos.shape[:2]
    return torch.stack([videos[(torch.arange(n) + s) % n, s] for s in range(t)], dim=1)


@pytest.fixture(scope="module")
def faces_readings(faces_sets):
    reader = shipped("faces")
    a, b = faces_sets
    return reader, {name: gt.read_videos(reader, v) for name, v in
                    (("a", a), ("b", b), ("static", static(b)), ("spliced", spliced(b)))}


def test_real_against_real_motion_is_near_one_and_static_is_near_zero(faces_readings):
    reader, r = faces_readings
    same = gt.motion_metrics(reader, r["a"], r["b"])
    frozen = gt.motion_metrics(reader, r["a"], r["static"])
    assert 0.75 < same["amplitude_ratio"] < 1.33 and 0.75 < same["speed_ratio"] < 1.33
    assert frozen["amplitude_ratio"] < 0.02 and frozen["speed_ratio"] < 0.02
    assert frozen["ffd"] > 4 * same["ffd"] and frozen["ffd_trajectory"] > same["ffd_trajectory"]
    for name in reader.usable(reader.motion_names):
        assert 0.5 < same[f"amplitude_ratio/{name}"] < 2.0
        assert same[f"reader_r2/{name}"] >= rd.MIN_R2
    assert same["reader_min_r2"] == rd.MIN_R2


def test_spliced_identities_drift_and_real_videos_do_not(faces_readings):
    reader, r = faces_readings
    same = gt.content_metrics(reader, r["a"], r["b"])
    swapped = gt.content_metrics(reader, r["a"], r["spliced"])
    frozen = gt.content_metrics(reader, r["a"], r["static"])
    assert 0.75 < same["identity_drift_ratio"] < 1.33
    assert swapped["identity_drift_ratio"] > 3
    assert swapped["identity_drift_fake"] > 0.5 > same["identity_drift_real"]
    assert frozen["identity_drift_fake"] == 0.0
    assert all(k.startswith(("drift_", "identity_", "reader_", "n_")) for k in same)


def test_frame_metrics_see_frames_not_motion(faces_readings, faces_sets):
    reader, r = faces_readings
    same = gt.frames_metrics(reader, r["a"], r["b"])
    swapped = gt.frames_metrics(reader, r["a"], r["spliced"])
    # (32 videos are few identities: real against real is far from 0 here, hence the modest factors)
    # splicing only reorders the frames of B: per-frame distances are exactly those of B
    assert swapped["fid"] == pytest.approx(same["fid"], rel=1e-6)
    assert swapped["ffd_frames"] == pytest.approx(same["ffd_frames"], rel=1e-6)
    noisy = gt.frames_metrics(reader, r["a"], noised(faces_sets[1]))
    assert noisy["fid"] > 1.5 * same["fid"] and noisy["ffd_frames"] > same["ffd_frames"]
    recoloured = gt.frames_metrics(reader, r["a"], faces_sets[1].flip(2))     # RGB -> BGR
    assert recoloured["fid"] > 2 * same["fid"] and recoloured["ffd_frames"] > 2 * same["ffd_frames"]


def noised(videos):
    rng = torch.Generator().manual_seed(0)
    noise = torch.randint(-60, 61, videos.shape, generator=rng)
    return (videos.int() + noise).clamp(0, 255).byte()


def test_groundtruth_metrics_reads_once_and_checks_inputs(faces_sets):
    reader = shipped("faces")
    a, b = faces_sets
    everything = gt.groundtruth_metrics(reader, a[:8, :4], b[:8, :4])
    assert {"ffd", "identity_drift_ratio", "fid", "reader_r2/yaw"} <= set(everything)
    assert all(isinstance(v, float) for v in everything.values())
    with pytest.raises(MocohdError):
        gt.motion_metrics(reader, a[:4, :4], b[:4, :6])
    with pytest.raises(MocohdError):
        gt.read_videos(reader, a.float())
    with pytest.raises(MocohdError):
        gt.render_real("faces", 1, 2, 16, seed=rd.READER_SEED_BASE)


def test_unreadable_factors_are_left_out_unless_asked_for(faces_readings):
    reader, r = faces_readings
    poor = [n for n in reader.factor_names if reader.r2[n] < rd.MIN_R2]
    default = gt.frames_metrics(reader, r["a"], r["b"])
    everything = gt.motion_metrics(reader, r["a"], r["b"], min_r2=None)
    assert all(f"amplitude_ratio/{n}" in everything for n in reader.motion_names)
    assert all(f"reader_r2/{n}" in default for n in reader.factor_names)
    for name in poor:
        assert f"amplitude_ratio/{name}" not in gt.motion_metrics(reader, r["a"], r["b"])


def test_render_real_is_the_domain_video():
    videos = gt.render_real("sky", 2, 3, 16, seed=5)
    assert videos.shape == (2, 3, 3, 16, 16) and videos.dtype == torch.uint8
    np.testing.assert_array_equal(videos[1].permute(0, 2, 3, 1).numpy(), get_domain("sky").video(5, 1, 3, 16).frames)


def test_sky_motion_is_the_sun_and_the_light():
    """The sky reader's motion factors are the sun's path and the daylight; frozen skies score 0."""
    reader = shipped("sky")
    assert reader.usable(reader.motion_names) == ["sun_x", "sun_y", "daylight"]
    real = gt.read_videos(reader, gt.render_real("sky", 24, 8, 64, seed=11))
    other = gt.render_real("sky", 24, 8, 64, seed=12)
    same = gt.motion_metrics(reader, real, other)
    frozen = gt.motion_metrics(reader, real, static(other))
    assert 0.75 < same["speed_ratio"] < 1.33 and frozen["speed_ratio"] < 0.02
    assert frozen["ffd"] > 4 * same["ffd"]
    assert gt.content_metrics(reader, real, spliced(other))["identity_drift_ratio"] > 3
