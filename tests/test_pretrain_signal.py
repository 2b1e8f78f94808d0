"""Issue 36 item 5: `mocohd pretrain` logs a frames FID at each sample step when an Inception detector is
at hand (mocohd_cli/evaluation/frames_fid.py), and says so when none is; its help says what a usable
backbone costs."""
from __future__ import annotations

import re

import pytest
import torch
from torch import Tensor, nn
from typer.testing import CliRunner

from mocohd_cli.cli import app
from mocohd_cli.data.domains import get_domain
from mocohd_cli.evaluation.detectors import DETECTORS
from mocohd_plugins.stylegan2.pretrain import PretrainConfig, Pretrainer

TINY = dict(size=16, style_dim=32, n_mlp=2, channels={4: 32, 8: 16, 16: 16}, batch_size=4, sample_every=2,
            checkpoint_minutes=1e6, device="cpu", steps=4)


class TinyInception(nn.Module):
    """uint8 frames [B, 3, H, W] -> 6 features (channel means and spreads), called as the real one is."""

    def forward(self, x: Tensor, return_features: bool = False) -> Tensor:
        assert x.dtype == torch.uint8 and x.dim() == 4
        v = x.float() / 255.0
        return torch.cat([v.mean(dim=(2, 3)), v.std(dim=(2, 3))], dim=1)


@pytest.fixture
def frames() -> Tensor:
    video = get_domain("faces").video(0, 0, 8, 16).frames
    return torch.from_numpy(video).permute(0, 3, 1, 2).contiguous()


def fids(run) -> list[tuple[int, float]]:
    return [(int(m.group(1)), float(m.group(2))) for line in (run / "log.txt").read_text().splitlines()
            if (m := re.search(r"step (\d+)/\d+ .*frames_fid=([0-9.]+)", line))]


def test_a_cached_inception_gives_a_frames_fid_at_each_sample_step(frames, tmp_path, monkeypatch):
    detector = tmp_path / "mocohd-cache" / "detectors" / DETECTORS["inception"].file
    detector.parent.mkdir(parents=True)
    torch.jit.save(torch.jit.script(TinyInception()), str(detector))
    messages = []
    Pretrainer(PretrainConfig(out=str(tmp_path / "run"), **TINY), frames, log=messages.append).run()
    logged = fids(tmp_path / "run")
    assert [step for step, _ in logged] == [2, 4] and all(value >= 0 for _, value in logged)
    assert any("frames FID at each sample step" in m for m in messages)
    assert any(m.startswith("step 2: frames fid") for m in messages)


def test_without_a_detector_the_run_says_how_to_get_the_fid(frames, tmp_path):
    messages = []
    Pretrainer(PretrainConfig(out=str(tmp_path / "run"), **TINY), frames, log=messages.append).run()
    assert fids(tmp_path / "run") == []
    assert any("no Inception detector at hand" in m and "--detector" in m for m in messages)


def test_the_help_says_what_a_usable_backbone_costs():
    result = CliRunner().invoke(app, ["pretrain", "--help"], env={"COLUMNS": "200"})
    text = " ".join(result.output.split())
    assert result.exit_code == 0
    assert "usable" in text and "images" in text and "GPU" in text and "docs/pretrain_cost.md" in text
