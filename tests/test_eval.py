"""`mocohd eval`: the statistics against independent computations, the protocol (what reaches the
detectors), the detector files (override, cache, download, offline), and the command end to end.
The detectors here are tiny random TorchScript modules with the real ones' call signatures."""
from __future__ import annotations

import hashlib
import http.server
import json
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import Tensor, nn
from typer.testing import CliRunner

from mocohd_cli.cli import app
from mocohd_cli.evaluation import detectors
from mocohd_cli.evaluation.metrics import FeatureKind, extract
from mocohd_cli.evaluation.sources import DatasetVideos, FolderVideos
from mocohd_cli.evaluation.statistics import FeatureStats, frechet_distance, inception_score, kernel_distance
from mocohd_cli.infra.errors import MocohdError

runner = CliRunner()


# -- tiny detectors -------------------------------------------------------------------------------
class TinyI3D(nn.Module):
    """uint8 [B, 3, T, H, W] -> [B, 12]: colour means and spreads, and how much the frames change."""

    def __init__(self):
        super().__init__()
        self.register_buffer("projection", torch.randn(9, 6, generator=torch.Generator().manual_seed(0)))

    def forward(self, x: Tensor, rescale: bool = False, resize: bool = False, return_features: bool = False) -> Tensor:
        assert x.dtype == torch.uint8 and x.dim() == 5 and x.shape[1] == 3, "I3D takes uint8 [B, 3, T, H, W]"
        assert rescale and resize and return_features, "called as StyleGAN-V calls it"
        v = x.float() / 255.0
        change = (v[:, :, 1:] - v[:, :, :-1]).abs().mean(dim=(2, 3, 4))
        stats = torch.cat([v.mean(dim=(2, 3, 4)), v.std(dim=(2, 3, 4)), change], dim=1)
        return torch.cat([stats, stats @ self.projection[:, :3]], dim=1)


class TinyInception(nn.Module):
    def forward(self, x: Tensor, return_features: bool = False) -> Tensor:
        assert x.dtype == torch.uint8 and x.dim() == 4 and x.shape[1] == 3, "Inception takes uint8 [B, 3, H, W]"
        assert return_features
        v = x.float() / 255.0
        return torch.cat([v.mean(dim=(2, 3)), v.std(dim=(2, 3)), v[:, :, ::2, ::2].mean(dim=(2, 3))], dim=1)


class TinyC3D(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        assert x.dtype == torch.uint8 and x.dim() == 5 and x.shape[2] == 16
        v = x.float().mean(dim=(2, 3, 4)) / 255.0
        return torch.softmax(torch.cat([v, 1 - v], dim=1) * 8, dim=1)


class TinyEmbedder(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.float().mean(dim=(2, 3)) / 255.0


@pytest.fixture(scope="module")
def detector_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("detectors")
    files = {}
    for name, module in (("i3d", TinyI3D()), ("inception", TinyInception()), ("c3d", TinyC3D()),
                         ("embedder", TinyEmbedder())):
        files[name] = folder / f"{name}.pt"
        torch.jit.save(torch.jit.script(module), str(files[name]))
    return files


def detector_args(files) -> list[str]:
    return [arg for name in ("i3d", "inception", "c3d") for arg in ("--detector", f"{name}={files[name]}")]


# -- datasets -------------------------------------------------------------------------------------
def write_video(folder: Path, frames: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for t, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"img_{t:04d}.png")


def moving_videos(root: Path, n: int, length: int, *, seed: int, size: int = 16, static: bool = False) -> Path:
    """Videos of a coloured square moving across a gradient (or standing still)."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        colour, speed = rng.integers(40, 255, 3), rng.integers(1, 3)
        frames = np.zeros((length, size, size, 3), np.uint8)
        frames[:] = np.linspace(0, 120, size, dtype=np.uint8)[None, None, :, None]
        for t in range(length):
            x = 0 if static else (t * speed) % (size - 4)
            frames[t, 6:10, x:x + 4] = colour
        write_video(root / f"video_{i:03d}", frames)
    return root


def numbered_videos(root: Path, lengths: list[int], size: int = 8) -> Path:
    """Video v's frame k has every pixel = 10 v + k: what reaches a detector can be read back."""
    for v, length in enumerate(lengths):
        frames = np.stack([np.full((size, size, 3), 10 * v + k, np.uint8) for k in range(length)])
        write_video(root / f"video_{v:03d}", frames)
    return root


# -- statistics -----------------------------------------------------------------------------------
def test_frechet_distance_matches_an_independent_computation():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(400, 6)), rng.normal(size=(300, 6)) @ rng.normal(size=(6, 6)) + 0.5
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    # independent: the eigenvalues of S1 S2 (not symmetric) give tr((S1 S2)^(1/2))
    trace_sqrt = np.sqrt(np.linalg.eigvals(s1 @ s2).astype(complex)).real.sum()
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * trace_sqrt
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-9)
    singular = np.zeros((6, 6))  # rank-deficient covariances do not break the square root
    assert np.isfinite(frechet_distance(mu1, singular, mu2, s2))


def test_feature_stats_are_population_moments_in_float64():
    x = np.random.default_rng(1).normal(size=(500, 4)).astype(np.float32)
    stats = FeatureStats()
    for part in np.array_split(x, 7):
        stats.update(part)
    assert stats.count == 500
    np.testing.assert_allclose(stats.mean, x.astype(np.float64).mean(0), rtol=1e-12)
    np.testing.assert_allclose(stats.cov, np.cov(x.astype(np.float64), rowvar=False, bias=True), atol=1e-12)
    np.testing.assert_array_equal(stats.features, x)


def test_kernel_distance_matches_a_direct_loop():
    rng = np.random.default_rng(2)
    fake, real = rng.normal(size=(30, 5)), rng.normal(size=(40, 5)) + 0.3

    def k(x, y):
        return (x @ y / 5 + 1) ** 3

    picks = np.random.default_rng(7)
    total = 0.0
    for _ in range(3):
        x, y = fake[picks.choice(30, 30, replace=False)], real[picks.choice(40, 30, replace=False)]
        xx = sum(k(x[i], x[j]) for i in range(30) for j in range(30) if i != j) / (30 * 29)
        yy = sum(k(y[i], y[j]) for i in range(30) for j in range(30) if i != j) / (30 * 29)
        xy = sum(k(x[i], y[j]) for i in range(30) for j in range(30)) / (30 * 30)
        total += xx + yy - 2 * xy
    expected = total / 3 * 1000
    assert kernel_distance(fake, real, num_subsets=3, seed=7) == pytest.approx(expected, rel=1e-9)


def test_inception_score_of_confident_diverse_predictions_is_the_class_count():
    probabilities = np.eye(5)[np.arange(100) % 5]
    mean, std = inception_score(probabilities, splits=1)
    assert mean == pytest.approx(5.0) and std == 0.0
    mean, std = inception_score(probabilities, splits=10)  # shuffled splits are not balanced: lower, spread
    assert 1.0 < mean < 5.0 and std > 0
    assert inception_score(np.full((100, 5), 0.2))[0] == pytest.approx(1.0)


# -- protocol -------------------------------------------------------------------------------------
class Recording:
    """A 'detector' that remembers the uint8 batches it was shown."""

    def __init__(self):
        self.seen: list[Tensor] = []

    def __call__(self, batch: Tensor) -> Tensor:
        assert batch.dtype == torch.uint8
        self.seen.append(batch.clone())
        return batch.float().flatten(1)[:, :2]


def test_real_clips_are_consecutive_frames_at_seeded_offsets(tmp_path):
    root = numbered_videos(tmp_path / "real", [20, 20, 3, 20])  # video 2 is too short for 4 frames
    source = DatasetVideos(root, size=8, max_videos=10, seed=3)
    recorder = Recording()
    extract(FeatureKind("i3d", 4), source, recorder, batch_size=2, total=None, label="test")
    clips = torch.cat(recorder.seen)  # [N, T, 3, H, W]
    assert clips.shape == (3, 4, 3, 8, 8) and source.report.too_short == ["video_002"]
    values = clips[:, :, 0, 0, 0].long()
    for clip, video in zip(values, (0, 1, 3)):
        offset = int(clip[0]) - 10 * video
        assert clip.tolist() == [10 * video + offset + k for k in range(4)]  # consecutive, in order
        assert 0 <= offset <= 16
    again = Recording()
    extract(FeatureKind("i3d", 4), DatasetVideos(root, size=8, max_videos=10, seed=3), again, batch_size=3,
            total=None, label="test")
    assert torch.equal(torch.cat(again.seen), clips)  # same seed, same clips, any batch size
    other = Recording()
    extract(FeatureKind("i3d", 4), DatasetVideos(root, size=8, max_videos=10, seed=4), other, batch_size=2,
            total=None, label="test")
    assert not torch.equal(torch.cat(other.seen), clips)


def test_generated_clips_are_their_first_frames_and_frames_metrics_see_every_frame(tmp_path):
    root = numbered_videos(tmp_path / "fake", [20, 20])
    recorder = Recording()
    extract(FeatureKind("i3d", 5), FolderVideos(root, size=None, max_videos=5), recorder, batch_size=4,
            total=None, label="test")
    assert torch.cat(recorder.seen)[:, :, 0, 0, 0].tolist() == [list(range(5)), list(range(10, 15))]
    frames = Recording()
    extract(FeatureKind("inception", 0), DatasetVideos(root, size=8, max_videos=5), frames, batch_size=7,
            total=None, label="test")
    seen = torch.cat(frames.seen)
    assert seen.shape == (40, 3, 8, 8) and seen[:, 0, 0, 0].tolist() == list(range(20)) + list(range(10, 30))


def test_detectors_get_channels_then_time(detector_files, tmp_path):
    detector = detectors.Detector("i3d", detector_files["i3d"], "x", torch.device("cpu"))
    clips = torch.randint(0, 255, (2, 4, 3, 8, 8), dtype=torch.uint8)
    expected = TinyI3D()(clips.permute(0, 2, 1, 3, 4), rescale=True, resize=True, return_features=True)
    torch.testing.assert_close(detector(clips), expected)
    with pytest.raises(TypeError):
        detector(clips.float())


# -- detector files -------------------------------------------------------------------------------
def test_missing_detector_offline_names_file_address_and_place(tmp_path, monkeypatch):
    monkeypatch.setenv("MOCOHD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MOCOHD_OFFLINE", "1")
    with pytest.raises(MocohdError) as error:
        detectors.resolve_detector("i3d")
    text = error.value.render()
    assert "i3d_torchscript.pt" in text and "dropbox.com" in text and str(tmp_path / "cache" / "detectors") in text


class _Files(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def local_server(tmp_path):
    folder = tmp_path / "served"
    folder.mkdir()
    handler = lambda *a, **k: _Files(*a, directory=str(folder), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_download_is_checked_against_its_sha256(detector_files, local_server, tmp_path, monkeypatch):
    folder, address = local_server
    payload = detector_files["inception"].read_bytes()
    (folder / "inception.pt").write_bytes(payload)
    good = hashlib.sha256(payload).hexdigest()
    monkeypatch.setenv("MOCOHD_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MOCOHD_OFFLINE", raising=False)
    spec = detectors.DETECTORS["inception"]
    monkeypatch.setitem(detectors.DETECTORS, "inception",
                        detectors.DetectorSpec(**{**spec.__dict__, "url": f"{address}/inception.pt", "sha256": "0" * 64}))
    with pytest.raises(MocohdError, match="expected 0000"):
        detectors.resolve_detector("inception")
    assert not (tmp_path / "cache" / "detectors" / spec.file).exists()  # nothing written
    monkeypatch.setitem(detectors.DETECTORS, "inception",
                        detectors.DetectorSpec(**{**spec.__dict__, "url": f"{address}/inception.pt", "sha256": good}))
    path, digest = detectors.resolve_detector("inception")
    assert digest == good and path.read_bytes() == payload
    (folder / "inception.pt").unlink()  # now served from the cache, no network needed
    assert detectors.resolve_detector("inception") == (path, good)


def test_a_file_that_is_no_torchscript_is_refused(tmp_path):
    bad = tmp_path / "i3d.pt"
    bad.write_bytes(b"not a model")
    with pytest.raises(MocohdError, match="not a TorchScript"):
        detectors.Detector("i3d", bad, "x", torch.device("cpu"))


# -- the command ----------------------------------------------------------------------------------
def test_eval_command_end_to_end(detector_files, tmp_path, monkeypatch):
    monkeypatch.setenv("MOCOHD_CACHE", str(tmp_path / "cache"))
    real = moving_videos(tmp_path / "real", 24, 18, seed=0)
    same = moving_videos(tmp_path / "same", 24, 18, seed=1)
    static = moving_videos(tmp_path / "static", 24, 18, seed=1, static=True)
    metrics = ["fvd16", "kvd", "fid", "kid", "isv", "acd"]
    common = [arg for m in metrics for arg in ("--metric", m)] + detector_args(detector_files) + [
        "--embedder", str(detector_files["embedder"]), "--num-videos", "24", "--batch-size", "5"]

    def run(fake, json_name, real_arg=real):
        result = runner.invoke(app, ["eval", "--real", str(real_arg), "--fake", str(fake), *common,
                                     "--json", str(tmp_path / json_name)])
        assert result.exit_code == 0, result.output
        return json.loads((tmp_path / json_name).read_text())

    near = run(same, "same.json")
    far = run(static, "static.json")
    assert set(metrics) <= set(near) and near["protocol"]["fake_videos"] == 24
    assert near["protocol"]["detectors"]["i3d"]["sha256"] == hashlib.sha256(
        detector_files["i3d"].read_bytes()).hexdigest()
    assert near["protocol"]["real_statistics"]["i3d-16f"]["count"] == 24
    assert far["fvd16"] > 3 * near["fvd16"] and far["kvd"] > near["kvd"]
    assert far["acd"] < near["acd"]  # a still video's frames are all alike
    # statistics saved once give the same numbers
    stats = tmp_path / "real.npz"
    saved = runner.invoke(app, ["eval", "stats", str(real), "--out", str(stats), "--metric", "fvd16", "--metric",
                                "fid", "--resolution", "16", "--num-videos", "24", *detector_args(detector_files)])
    assert saved.exit_code == 0, saved.output
    from_file = runner.invoke(app, ["eval", "--real", str(stats), "--fake", str(same), "--metric", "fvd16",
                                    "--metric", "fid", *detector_args(detector_files), "--num-videos", "24",
                                    "--json", str(tmp_path / "file.json")])
    assert from_file.exit_code == 0, from_file.output
    reused = json.loads((tmp_path / "file.json").read_text())
    assert reused["fvd16"] == pytest.approx(near["fvd16"]) and reused["fid"] == pytest.approx(near["fid"])


def test_eval_errors_are_one_clear_message(detector_files, tmp_path):
    real = moving_videos(tmp_path / "real", 3, 18, seed=0)
    result = runner.invoke(app, ["eval", "--real", str(real), "--metric", "fvd16"])
    assert result.exit_code == 2 and "--fake" in result.output
    result = runner.invoke(app, ["eval", "--real", str(real), "--fake", str(real), "--metric", "nope"])
    assert result.exit_code == 2 and "fvd16" in result.output
    result = runner.invoke(app, ["eval", "--fake", str(real), "--metric", "fvd16", *detector_args(detector_files)])
    assert result.exit_code == 2 and "--real" in result.output


def test_training_evaluates_and_keeps_the_best_model(detector_files, tiny_stylegan2_checkpoint, tiny_videos, tmp_path):
    from mocohd_cli.infra.files import read_safetensors
    from mocohd_cli.training import TrainConfig, train

    config = TrainConfig(backbone="stylegan2", checkpoint=str(tiny_stylegan2_checkpoint), data=str(tiny_videos),
                         out=str(tmp_path / "run"), frames=4, video_frame_size=16, batch_size=2, h_dim=16, n_pca=8,
                         d_channels=4, pca_samples=512, workers=0, num_samples=0, device="cpu", iterations=3,
                         eval_every=1, eval_metric="fid", eval_videos=4,
                         eval_detectors=[f"inception={detector_files['inception']}"])
    result = train(config, progress=False)
    log = (result.run_dir / "log.txt").read_text()
    assert log.count("eval at step") == 3 and "best so far" in log
    _, meta = read_safetensors(result.run_dir / "best.safetensors")
    best_step = int(meta["step"])
    scores = {int(line.split("eval at step ")[1].split(":")[0]): float(line.split("fid=")[1].split()[0])
              for line in log.splitlines() if "eval at step" in line}
    assert scores[best_step] == min(scores.values())  # the export kept is one that scored best
    state = torch.load(result.run_dir / "state" / "latest.pt", weights_only=True)
    assert state["eval"]["best"] == pytest.approx(min(scores.values()), rel=1e-4)


def test_ground_truth_metrics_through_the_command(tmp_path):
    """The faces domain with the shipped factor reader: rendered videos read as real, the same
    videos frozen on frame 0 lose their motion (and keep their identity)."""
    import shutil

    from mocohd_cli.data.domains import make_dataset

    real = make_dataset("faces", tmp_path / "faces", videos=12, frames=16, size=64, seed=3)
    static = tmp_path / "static"
    for video in sorted(real.glob("video_*")):
        (static / video.name).mkdir(parents=True)
        for t in range(16):
            shutil.copy(video / "img_0000.png", static / video.name / f"img_{t:04d}.png")

    def run(fake, *extra):
        out = tmp_path / f"{fake.name}{len(extra)}.json"
        result = runner.invoke(app, ["eval", "--real", str(real), "--fake", str(fake), "--metric", "motion",
                                     "--metric", "content", "--num-videos", "12", "--json", str(out), *extra])
        assert result.exit_code == 0, result.output
        return json.loads(out.read_text())

    moving, frozen = run(real), run(static)
    # videos stepped one rendered frame at a time, judged as if each step spanned two: half the speed
    paced = run(real, "--time-step", "2")
    assert paced["protocol"]["ground_truth"]["time_step"] == 2 and moving["protocol"]["ground_truth"]["time_step"] == 1
    assert paced["details"]["motion"]["speed_ratio"] < 0.75 * moving["details"]["motion"]["speed_ratio"]
    assert moving["protocol"]["ground_truth"]["domain"] == "faces"  # found in the dataset's dataset.json
    assert 0.6 < moving["details"]["motion"]["amplitude_ratio"] < 1.6
    assert frozen["details"]["motion"]["amplitude_ratio"] < 0.05 and frozen["motion"] > 3 * moving["motion"]
    assert frozen["details"]["content"]["identity_drift_fake"] == 0.0
    missing = runner.invoke(app, ["eval", "--fake", str(static), "--metric", "motion"])
    assert missing.exit_code == 2 and "--domain" in missing.output


def test_videos_generated_on_the_fly_are_seeded_and_match_a_sampled_folder(detector_files, tiny_stylegan2,
                                                                           tiny_stylegan2_checkpoint, tmp_path):
    """--motion generates the videos in process; the numbers equal those of the same videos written by
    `mocohd sample` (lossless PNG frames) and read back with --fake."""
    from mocohd_cli.evaluation.sources import SEED_CHUNK
    from mocohd_cli.models.motion import MotionGenerator

    real = moving_videos(tmp_path / "real", 6, 18, seed=0, size=32)
    motion = MotionGenerator(tiny_stylegan2.latent_dim, h_dim=16, n_pca=8).save(
        tmp_path / "m.safetensors", backbone="stylegan2", backbone_checkpoint=str(tiny_stylegan2_checkpoint))
    args = ["--real", str(real), "--metric", "fvd16", "--metric", "fid", "--num-videos", str(SEED_CHUNK),
            *detector_args(detector_files)]

    def scores(*extra, name):
        out = tmp_path / f"{name}.json"
        result = runner.invoke(app, ["eval", *args, *extra, "--json", str(out)])
        assert result.exit_code == 0, result.output
        return json.loads(out.read_text())

    first, again = scores("--motion", str(motion), name="a"), scores("--motion", str(motion), name="b")
    assert first["fvd16"] == again["fvd16"] and first["protocol"]["resolution"] == 32
    other = scores("--motion", str(motion), "--seed", "1", name="c")
    assert other["fvd16"] != first["fvd16"]
    # the same videos (chunk 0 of seed 0), written as PNG frames, give the same numbers
    sampled = runner.invoke(app, ["sample", "--motion", str(motion), "--num-videos", str(SEED_CHUNK), "--frames", "16",
                                  "--format", "png", "--seed", "0", "--out", str(tmp_path / "sampled")])
    assert sampled.exit_code == 0, sampled.output
    from_folder = scores("--fake", str(tmp_path / "sampled"), name="d")
    assert from_folder["fvd16"] == pytest.approx(first["fvd16"], rel=1e-6)
    assert from_folder["fid"] == pytest.approx(first["fid"], rel=1e-6)
