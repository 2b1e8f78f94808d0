"""Issue 36, items 3 and 4: ACD's embedder always has trained weights (the number repeats, the table shows
the real reference, the JSON counts the videos scored); messages that name URLs, options and ignored files
as they are."""
from __future__ import annotations

import http.server
import json
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from mocohd_cli.cli import app
from mocohd_cli.evaluation import detectors
from mocohd_cli.evaluation.detectors import Embedder
from mocohd_cli.evaluation.run import EvalSettings, run_evaluation
from mocohd_cli.infra.errors import MocohdError

runner = CliRunner()


def frame_videos(root: Path, n: int, length: int = 10, *, seed: int, size: int = 32) -> Path:
    """n frame folders of a square moving over noise."""
    rng = np.random.default_rng(seed)
    for v in range(n):
        folder = root / f"video_{v:03d}"
        folder.mkdir(parents=True)
        background = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
        for t in range(length):
            frame = background.copy()
            frame[8:16, t:t + 8] = rng.integers(0, 255, 3, dtype=np.uint8)
            Image.fromarray(frame).save(folder / f"img_{t:04d}.png")
    return root


# -- ACD ------------------------------------------------------------------------------------------
def test_a_timm_embedder_without_weights_is_refused():
    import torch

    with pytest.raises(MocohdError, match="randomly initialised") as error:
        Embedder("timm:resnet18", None, torch.device("cpu"))
    assert "--embedder-weights" in error.value.render() and "identity:faces" in error.value.render()


def test_acd_repeats_shows_the_real_reference_and_counts_the_videos_scored(tmp_path):
    real = frame_videos(tmp_path / "real", 5, seed=0)
    fake = frame_videos(tmp_path / "fake", 6, seed=1)
    runs = []
    for attempt in range(2):
        out = tmp_path / f"acd{attempt}.json"
        result = runner.invoke(app, ["eval", "--metric", "acd", "--embedder", "identity:faces", "--real", str(real),
                                     "--fake", str(fake), "--frames", "8", "--seed", "0", "--json", str(out)])
        assert result.exit_code == 0, result.output
        runs.append((json.loads(out.read_text()), result.output))
    (first, table), (second, _) = runs
    assert first["acd"] == second["acd"] and first["details"]["acd"]["real"] == second["details"]["acd"]["real"]
    assert first["protocol"]["fake_videos"] == 6  # not --num-videos' 2048
    assert first["details"]["acd"]["videos"] == 6 and first["details"]["acd"]["real_videos"] == 5
    assert "real videos" in table and f"{first['details']['acd']['real']:.4g}" in table
    assert "identity_faces_64" in first["protocol"]["detectors"]["embedder"]["file"]


def test_an_unknown_identity_embedder_names_the_shipped_ones(tmp_path):
    import torch

    with pytest.raises(MocohdError, match="no shipped identity encoder") as error:
        Embedder(f"identity:{tmp_path / 'missing.safetensors'}", None, torch.device("cpu"))
    assert "identity:faces" in error.value.render()


# -- messages -------------------------------------------------------------------------------------
class _NotFound(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_error(404)

    def log_message(self, *args):
        pass


def test_a_failed_detector_download_shows_the_url_and_the_detector_option(tmp_path, monkeypatch):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/metrics/inception.pt"
        monkeypatch.delenv("MOCOHD_OFFLINE", raising=False)
        spec = detectors.DETECTORS["inception"]
        monkeypatch.setitem(detectors.DETECTORS, "inception", detectors.DetectorSpec(**{**spec.__dict__, "url": url}))
        with pytest.raises(MocohdError) as error:
            detectors.resolve_detector("inception")
    finally:
        server.shutdown()
    text = error.value.render()
    assert text.startswith(url + ":")  # "http://", not "http:/"
    assert "--detector inception=PATH" in text


def test_the_ground_truth_message_agrees_with_one_metric(tmp_path):
    fake = frame_videos(tmp_path / "fake", 2, seed=0)
    with pytest.raises(MocohdError, match="motion needs a procedural domain"):
        run_evaluation(EvalSettings(metrics=["motion"], fake=str(fake)))
    with pytest.raises(MocohdError, match="motion and content need a procedural domain"):
        run_evaluation(EvalSettings(metrics=["motion", "content"], fake=str(fake)))


def test_inspect_of_one_video_file_names_its_own_argument(tmp_path):
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\0" * 64)
    result = runner.invoke(app, ["data", "inspect", str(video)])
    assert result.exit_code == 2
    assert "mocohd data inspect" in result.output and "--data" not in result.output
    assert "the folder that holds it" in result.output


def test_inspect_says_what_it_ignored(tmp_path):
    root = frame_videos(tmp_path / "data", 2, seed=0)
    (root / "notes.txt").write_text("shot on a phone")
    (root / "README").write_text("x")
    result = runner.invoke(app, ["data", "inspect", str(root)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "ignored 2 files that are neither images nor videos (1 without suffix, 1 .txt)" in text
