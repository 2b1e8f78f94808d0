"""Shared fixtures: a tiny StyleGAN2 backbone and its rosinality-layout checkpoint.

Tiny means fast: 32 px, W of 32 dims, 2 mapping layers, 8-32 channels (~50k parameters), so a
frame costs well under a millisecond on the CPU.
"""
from __future__ import annotations

import pytest
import torch

from mocohd_cli import load_backbone

TINY_STYLEGAN2 = {"size": 32, "style_dim": 32, "n_mlp": 2, "channels": {4: 32, 8: 32, 16: 16, 32: 8}}


def make_tiny_stylegan2(seed: int = 0, **overrides):
    """A random tiny StyleGAN2 (trainable, not frozen) with non-zero noise strengths and biases,
    as a trained network has (a fresh rosinality init has them all at zero)."""
    from mocohd_plugins.stylegan2 import StyleGAN2Generator

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = StyleGAN2Generator(**{**TINY_STYLEGAN2, **overrides})
        with torch.no_grad():
            for name, param in model.named_parameters():
                if name.endswith("noise.weight"):
                    param.uniform_(0.1, 0.3)
                elif name.endswith(".bias") and "modulation" not in name and not name.startswith("style."):
                    param.normal_(0.0, 0.1)
    return model


@pytest.fixture(scope="session")
def tiny_stylegan2_checkpoint(tmp_path_factory):
    """Path of a tiny rosinality-layout checkpoint: torch.save({'g_ema': state_dict, 'latent_avg': w_mean})."""
    model = make_tiny_stylegan2()
    path = tmp_path_factory.mktemp("stylegan2") / "tiny_stylegan2.pt"
    torch.save({"g_ema": model.state_dict(), "latent_avg": model.mean_latent().clone()}, path)
    return path


@pytest.fixture
def tiny_stylegan2(tiny_stylegan2_checkpoint):
    """The tiny StyleGAN2 loaded as every command loads a backbone (load_backbone: frozen, CPU)."""
    return load_backbone("stylegan2", tiny_stylegan2_checkpoint)


@pytest.fixture(autouse=True)
def _isolated_cache_and_one_thread(monkeypatch, tmp_path):
    """Every test gets its own cache folder (PCA, example datasets) and runs torch on one thread:
    tiny models on a small shared CPU run several times faster without oversubscription."""
    monkeypatch.setenv("MOCOHD_CACHE", str(tmp_path / "mocohd-cache"))
    monkeypatch.setenv("MOCOHD_THREADS", "1")  # what every command's --threads default then applies
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny_videos(tmp_path):
    """Three 10-frame 24 px videos (frame folders) of a bright square drifting over noise."""
    import numpy as np
    from PIL import Image

    root = tmp_path / "videos"
    rng = np.random.default_rng(0)
    for v in range(3):
        folder = root / f"clip{v}"
        folder.mkdir(parents=True)
        for i in range(10):
            frame = (rng.random((24, 24, 3)) * 80).astype(np.uint8)
            frame[4:12, 2 + i:10 + i] = 255
            Image.fromarray(frame).save(folder / f"img_{i}.png")
    return root
