"""Video prediction (`mocohd eval --metric prediction`, mocohd_cli/evaluation/prediction.py): SSIM against
known values, the scores' direction, and the metric end to end on the tiny backbone."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mocohd_cli.cli import app
from mocohd_cli.evaluation.prediction import score_prediction, ssim
from mocohd_cli.infra.errors import MocohdError
from mocohd_cli.models.motion import MotionGenerator

runner = CliRunner()


def reference_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Wang et al. (2004) SSIM of two grey float64 images in [0, 1], written out in NumPy: 11x11
    gaussian window (sigma 1.5), K1 0.01, K2 0.03, mean over the positions where the window fits."""
    x = np.arange(11) - 5
    g = np.exp(-x ** 2 / (2 * 1.5 ** 2))
    g /= g.sum()
    window = np.outer(g, g)
    h, w = a.shape

    def filt(img):
        return np.array([[np.sum(img[i:i + 11, j:j + 11] * window) for j in range(w - 10)] for i in range(h - 10)])

    mu_a, mu_b = filt(a), filt(b)
    var_a, var_b = filt(a * a) - mu_a ** 2, filt(b * b) - mu_b ** 2
    cov = filt(a * b) - mu_a * mu_b
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    return float(np.mean((2 * mu_a * mu_b + c1) * (2 * cov + c2) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))))


def test_ssim_known_values():
    rng = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (2, 3, 24, 24), dtype=torch.uint8, generator=rng)
    assert ssim(images, images).tolist() == pytest.approx([1.0, 1.0], abs=1e-6)
    # flat images: the structure and contrast terms are 1, SSIM = (2ab + C1) / (a^2 + b^2 + C1)
    a, b = torch.full((1, 3, 16, 16), 0.2), torch.full((1, 3, 16, 16), 0.6)
    expected = (2 * 0.2 * 0.6 + 1e-4) / (0.2 ** 2 + 0.6 ** 2 + 1e-4)
    assert float(ssim(a, b)) == pytest.approx(expected, abs=1e-5)
    # a textured case against the formula written out
    noisy = (images.double() + 40 * torch.randn(images.shape, generator=rng, dtype=torch.float64)).clamp(0, 255)
    noisy = noisy.round().to(torch.uint8)
    for k in range(2):
        channels = [reference_ssim(images[k, c].double().numpy() / 255, noisy[k, c].double().numpy() / 255)
                    for c in range(3)]
        assert float(ssim(images[k:k + 1], noisy[k:k + 1])) == pytest.approx(np.mean(channels), abs=1e-5)
    with pytest.raises(MocohdError, match="11 px"):
        ssim(images[..., :8, :8], images[..., :8, :8])


def test_scores_go_the_expected_way():
    rng = torch.Generator().manual_seed(1)
    real = torch.randint(0, 256, (3, 5, 3, 16, 16), dtype=torch.uint8, generator=rng)
    perfect = score_prediction(real, real.clone())
    assert perfect["psnr"] == 100.0 and perfect["ssim"] == pytest.approx(1.0)  # capped, never inf
    assert json.loads(json.dumps(perfect)) == perfect  # finite: valid JSON
    scores = []
    for amount in (5, 20, 60):
        noise = amount * torch.randn(real.shape, generator=rng)
        scores.append(score_prediction(real, (real.float() + noise).clamp(0, 255).round().to(torch.uint8)))
    assert perfect["psnr"] > scores[0]["psnr"] > scores[1]["psnr"] > scores[2]["psnr"]
    assert perfect["ssim"] > scores[0]["ssim"] > scores[1]["ssim"] > scores[2]["ssim"]
    # frame 0 is scored apart: only the predicted frames count in the headline
    only_first_wrong = real.clone()
    only_first_wrong[:, 0] = 255 - only_first_wrong[:, 0]
    split = score_prediction(real, only_first_wrong)
    assert split["psnr"] == 100.0 and split["psnr_frame0"] < 10 and len(split["psnr_per_frame"]) == 5
    with pytest.raises(MocohdError, match="same shape"):
        score_prediction(real, real[:, :3])


def test_prediction_metric_end_to_end(tiny_stylegan2_checkpoint, tmp_path):
    torch.manual_seed(0)
    motion = MotionGenerator(32, h_dim=16, n_pca=8, w_residual=0.5).save(
        tmp_path / "motion.safetensors", backbone="stylegan2", backbone_checkpoint=str(tiny_stylegan2_checkpoint))
    # "real" videos this backbone and motion model made: video i starts from content i of seed 7 and
    # moves with motion stream i of seed 7, so a prediction with --seed 7 can match them
    made = runner.invoke(app, ["sample", "--motion", str(motion), "-n", "2", "--frames", "4", "--noise", "const",
                               "--format", "png", "--seed", "7", "--out", str(tmp_path / "real")])
    assert made.exit_code == 0, made.output

    def evaluate(seed: int) -> dict:
        out = tmp_path / f"scores{seed}.json"
        result = runner.invoke(app, ["eval", "--metric", "prediction", "--real", str(tmp_path / "real"), "--motion",
                                     str(motion), "--frames", "4", "--num-videos", "2", "--inversion-steps", "300",
                                     "--seed", str(seed), "--json", str(out)])
        assert result.exit_code == 0, result.output
        assert "prediction_ssim" in result.output
        return json.loads(out.read_text())

    same, other = evaluate(7), evaluate(8)
    details = same["details"]["prediction"]
    assert details["videos"] == 2 and details["frames"] == 4 and len(details["psnr_per_frame"]) == 4
    assert details["psnr_frame0"] > 30  # the backbone's own frames invert well
    assert same["prediction"] > 30 and same["prediction_ssim"] > 0.9
    # another seed draws other motion noise: a worse prediction of the same videos
    assert other["prediction"] < same["prediction"] - 5 and other["prediction_ssim"] < same["prediction_ssim"]
    assert same["protocol"]["prediction"]["inversion_steps"] == 300
    refused = runner.invoke(app, ["eval", "--metric", "prediction", "--real", str(tmp_path / "real"), "--fake",
                                  str(tmp_path / "real")])
    assert refused.exit_code == 2 and "--motion" in refused.output
