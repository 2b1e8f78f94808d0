"""The third-party plugin example (examples/custom_backbone): registered, loaded, trained, sampled.

.ci/install installs it (`pip install -e examples/custom_backbone`); then the tests use its
entry point "tinyconv". Without that install they load the same class by file spec, which a
plugin author can also use, and a test registers the example's own entry-point declaration
through a temporary distribution, so the registration is always exercised.
"""
from __future__ import annotations

import tomllib
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from mocohd_cli import ImageGenerator, discover_backbones, load_backbone
from mocohd_cli.cli import app
from mocohd_cli.models.motion import load_motion
from mocohd_cli.models.generation import generate_videos
from mocohd_cli.training import TrainConfig, train

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "custom_backbone"
FILE_SPEC = f"{EXAMPLE / 'mocohd_tinyconv.py'}:TinyConvGenerator"


def example_spec() -> str:
    """'tinyconv' when the example is pip-installed, else the same class by file spec."""
    entry = discover_backbones().get("tinyconv")
    return "tinyconv" if entry is not None and entry.cls is not None else FILE_SPEC


@pytest.fixture
def example_checkpoint(tmp_path):
    from mocohd_cli.models.backbone import resolve_backbone_class

    cls = resolve_backbone_class(example_spec())
    torch.manual_seed(0)
    return cls(latent_dim=16, resolution=16, channels=8).save_safetensors(tmp_path / "tiny.safetensors")


@pytest.fixture
def example_distribution(tmp_path, monkeypatch):
    """The example's pyproject entry points, as an installed distribution would expose them."""
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    entries = project["entry-points"]["mocohd.backbones"]
    info = tmp_path / "site" / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    (info / "entry_points.txt").write_text(
        "[mocohd.backbones]\n" + "".join(f"{name} = {target}\n" for name, target in entries.items()))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.syspath_prepend(str(EXAMPLE))
    return project["name"]


def test_entry_point_registers_the_example(example_distribution):
    entry = discover_backbones()["tinyconv"]
    assert entry.error is None and entry.distribution == example_distribution
    assert issubclass(entry.cls, ImageGenerator) and entry.cls.name == "tinyconv"
    result = CliRunner().invoke(app, ["backbones"])
    assert result.exit_code == 0, result.output
    for name in ("stylegan2", "biggan", "tinyconv", example_distribution):
        assert name in result.output


def test_example_honours_the_backbone_contract(example_checkpoint):
    model = load_backbone(example_spec(), example_checkpoint)
    assert (model.name, model.latent_dim, model.resolution) == ("tinyconv", 16, 16)
    assert not any(p.requires_grad for p in model.parameters())
    latents = model.sample_latent(3, rng=torch.Generator().manual_seed(0))[:, None].repeat(1, 2, 1)
    frames = model.synthesize(latents, noise="random", rng=torch.Generator().manual_seed(1))
    assert frames.shape == (3, 2, 3, 16, 16) and frames.abs().max() <= 1
    torch.testing.assert_close(frames[:, 0], frames[:, 1])  # one noise draw per video, shared by its frames
    assert not torch.allclose(frames, model.synthesize(latents, noise="none"))
    torch.testing.assert_close(model.synthesize(latents, noise="const"), model.synthesize(latents, noise="const"))
    w = latents.clone().requires_grad_(True)
    model.synthesize(w, noise="none").square().mean().backward()
    assert w.grad is not None and w.grad.abs().sum() > 0
    reloaded = load_backbone(None, example_checkpoint) if example_spec() == "tinyconv" else \
        load_backbone(FILE_SPEC, model.save_safetensors(example_checkpoint.with_name("copy.safetensors")))
    torch.testing.assert_close(reloaded.synthesize(latents, noise="const"), model.synthesize(latents, noise="const"))


@pytest.fixture
def videos(tmp_path):
    """Three 8-frame procedural sky videos at 16 px."""
    from mocohd_cli.data.domains import make_dataset

    return make_dataset("sky", tmp_path / "videos", videos=3, frames=8, size=16, seed=0)


@contextmanager
def single_thread():
    """Tiny models on a shared CPU run several times faster on one thread than on many."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def test_train_and_sample_with_the_example(example_checkpoint, videos, tmp_path, monkeypatch):
    monkeypatch.setenv("MOCOHD_CACHE", str(tmp_path / "cache"))
    config = TrainConfig(backbone=example_spec(), checkpoint=str(example_checkpoint), data=str(videos),
                         out=str(tmp_path / "run"), frames=4, video_frame_size=16, batch_size=2, h_dim=8, n_pca=8,
                         d_channels=4, pca_samples=256, workers=0, num_samples=0, iterations=2, g_steps=2,
                         device="cpu")
    with single_thread():
        result = train(config, progress=False)
    assert result.steps == 2
    backbone = load_backbone(example_spec(), example_checkpoint)
    motion = load_motion(result.motion_path, backbone)
    assert motion.info["backbone_name"] == "tinyconv"
    videos_out = generate_videos(backbone, motion, num_videos=2, n_frames=6, seed=3)
    assert videos_out.shape == (2, 6, 3, 16, 16)
    again = generate_videos(backbone, motion, num_videos=2, n_frames=6, seed=3)
    torch.testing.assert_close(videos_out, again)
    assert (videos_out[:, 1:] - videos_out[:, :-1]).abs().max() > 0  # the frames move
