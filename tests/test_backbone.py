import textwrap

import pytest
import torch

from mocohd_cli import ImageGenerator, MocohdError, discover_backbones, load_backbone
from mocohd_cli.models.backbone import resolve_backbone_class

PLUGIN_SOURCE = textwrap.dedent('''
    import torch
    from mocohd_cli import ImageGenerator

    class Flat(ImageGenerator):
        name = "flat"
        description = "a constant-colour test generator"
        latent_dim = z_dim = 4
        resolution = 8

        def __init__(self):
            super().__init__()
            self.colour = torch.nn.Linear(4, 3)

        def mapping(self, z):
            return z * self.truncation

        def synthesize(self, latents, *, condition=None, noise="random", rng=None):
            b, t, _ = latents.shape
            rgb = torch.tanh(self.colour(latents))
            return rgb[..., None, None].expand(b, t, 3, 8, 8)
''')


@pytest.fixture
def fake_distributions(tmp_path, monkeypatch):
    """Two installed distributions on sys.path: one good plugin, one that fails to import."""
    (tmp_path / "flat_plugin.py").write_text(PLUGIN_SOURCE)
    (tmp_path / "broken_plugin.py").write_text("raise ImportError('needs a library that is not installed')\n")
    for dist, entry in (("flatdist", "flat = flat_plugin:Flat"), ("brokendist", "broken = broken_plugin:Gen")):
        info = tmp_path / f"{dist}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
        (info / "entry_points.txt").write_text(f"[mocohd.backbones]\n{entry}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_discovery_reports_broken_plugins_without_failing(fake_distributions):
    entries = discover_backbones()
    assert entries["flat"].cls is not None and entries["flat"].distribution == "flatdist"
    assert entries["flat"].description == "a constant-colour test generator"
    assert entries["broken"].cls is None and "not installed" in entries["broken"].error
    assert "stylegan2" in entries  # the built-in backbones come through the same group
    with pytest.raises(MocohdError, match="failed to import"):
        resolve_backbone_class("broken")


def test_specs_resolve_by_name_module_and_file(fake_distributions):
    by_name = resolve_backbone_class("flat")
    by_module = resolve_backbone_class("flat_plugin:Flat")
    by_file = resolve_backbone_class(f"{fake_distributions / 'flat_plugin.py'}:Flat")
    assert by_name is by_module
    assert by_file.__name__ == "Flat" and issubclass(by_file, ImageGenerator)


def test_loaded_backbone_is_frozen_but_passes_gradients(fake_distributions):
    model = load_backbone("flat")
    assert not any(p.requires_grad for p in model.parameters()) and not model.training
    latents = torch.randn(2, 3, 4, requires_grad=True)
    model.synthesize(latents).sum().backward()
    assert latents.grad is not None and latents.grad.abs().sum() > 0


def test_unknown_specs_give_clear_errors(fake_distributions, tmp_path):
    with pytest.raises(MocohdError, match="unknown backbone 'nope'.*installed:"):
        resolve_backbone_class("nope")
    with pytest.raises(MocohdError, match="cannot import backbone"):
        resolve_backbone_class("no_such_module:Gen")
    with pytest.raises(MocohdError, match="not a subclass"):
        resolve_backbone_class("torch.nn:Linear")
    with pytest.raises(MocohdError, match="not found"):
        resolve_backbone_class(f"{tmp_path / 'missing.py'}:Gen")
    with pytest.raises(MocohdError, match="checkpoint not found"):
        load_backbone("flat", tmp_path / "missing.pt")
    with pytest.raises(MocohdError, match="cannot tell which backbone"):
        junk = tmp_path / "junk.bin"
        junk.write_bytes(b"\x00" * 10)
        load_backbone(None, junk)


def test_sample_condition_for_unconditional_backbone(fake_distributions):
    model = load_backbone("flat")
    assert model.sample_condition(3) is None
    with pytest.raises(MocohdError, match="unconditional"):
        model.sample_condition(3, [1])
