"""`mocohd push`, tested at the huggingface_hub API boundary: what would be uploaded, and the card."""
from __future__ import annotations

import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from mocohd_cli import MotionGenerator
from mocohd_cli.cli import app
from mocohd_cli.infra.files import read_safetensors
from mocohd_cli.infra.hub import resolve
from mocohd_cli.infra.provenance import append_provenance
from mocohd_cli.infra.runs import dumps_flat_toml


@pytest.fixture
def run_folder(tmp_path):
    """A finished run: motion.safetensors (backbone: the shipped faces example), config.toml,
    provenance, a log with two evaluations and a sample GIF."""
    run = tmp_path / "run"
    (run / "samples").mkdir(parents=True)
    backbone = resolve("example:faces")
    MotionGenerator(32, h_dim=8, n_pca=8).save(run / "motion.safetensors", backbone="stylegan2",
                                               backbone_name="stylegan2", backbone_checkpoint=backbone,
                                               backbone_sha256="ab" * 32, version="0.1.0")
    (run / "config.toml").write_text(dumps_flat_toml({"mode": "in-domain", "data": "/data/faces-videos",
                                                      "iterations": 80, "frames": 8, "lr": 5e-4, "batch_size": 4}))
    (run / "log.txt").write_text("2026-01-01 00:00:00 eval at step 40: fvd16=321.5 (best so far: best.safetensors)\n"
                                 "2026-01-01 00:01:00 eval at step 80: fvd16=123.25\n")
    frames = [Image.fromarray(np.full((8, 8, 3), v, np.uint8)) for v in (0, 255)]
    frames[0].save(run / "samples" / "step_80.gif", save_all=True, append_images=frames[1:])
    append_provenance(run, device="cpu", step=0, argv=["mocohd", "train", "--token", "hf_abcdefghijklmnop"])
    return run


@pytest.fixture
def hub_api(monkeypatch):
    """HfApi.create_repo / create_commit recorded instead of sent."""
    from huggingface_hub import HfApi

    calls = {}

    def create_repo(self, repo_id, **kwargs):
        calls["create_repo"] = (repo_id, kwargs)

    def create_commit(self, repo_id, operations, **kwargs):
        calls["commit"] = (repo_id, {op.path_in_repo: op for op in operations}, kwargs)
        return type("Commit", (), {"commit_url": f"https://hub.example/{repo_id}/commit/1"})()

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "create_commit", create_commit)
    for name in ("HF_HUB_OFFLINE", "MOCOHD_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    return calls


def test_push_uploads_the_model_config_sample_and_card(run_folder, hub_api):
    result = CliRunner().invoke(app, ["push", str(run_folder), "--repo", "me/faces-motion", "--private",
                                      "--license", "mit"])
    assert result.exit_code == 0, result.output
    assert hub_api["create_repo"] == ("me/faces-motion", {"private": True, "exist_ok": True, "repo_type": "model"})
    repo, ops, _ = hub_api["commit"]
    assert repo == "me/faces-motion"
    assert set(ops) == {"motion.safetensors", "config.toml", "provenance.toml", "sample.gif", "README.md"}
    assert "hf://me/faces-motion/motion.safetensors" in result.output and "/commit/1" in result.output


def test_the_card_and_the_uploaded_motion_file(run_folder, hub_api, monkeypatch, tmp_path):
    captured = {}
    from huggingface_hub import HfApi

    def create_commit(self, repo_id, operations, **kwargs):  # read the staged files before they go away
        captured.update({op.path_in_repo: open(op.path_or_fileobj, "rb").read() for op in operations})

    monkeypatch.setattr(HfApi, "create_commit", create_commit)
    result = CliRunner().invoke(app, ["push", str(run_folder), "--repo", "me/faces-motion"])
    assert result.exit_code == 0, result.output
    card = captured["README.md"].decode()
    meta = yaml.safe_load(card.split("---")[1])
    assert meta["library_name"] == "mocohd" and "mocohd" in meta["tags"]
    info = meta["mocohd"]
    assert info["backbone"]["sha256"] == "ab" * 32 and info["backbone"]["name"] == "stylegan2"
    assert info["backbone"]["checkpoint"] == "example:faces"  # portable, not this machine's path
    assert info["dataset"] == "faces-videos" and info["schedule"]["iterations"] == 80
    assert info["eval"] == {"fvd16": {"value": 123.25, "step": 80}}  # the last evaluation
    assert "![videos sampled during training](sample.gif)" in card and "| fvd16 | 123.25 | 80 |" in card
    assert "hf_abcdefghijklmnop" not in captured["provenance.toml"].decode()
    assert captured["sample.gif"] == (run_folder / "samples" / "step_80.gif").read_bytes()
    uploaded = tmp_path / "uploaded.safetensors"
    uploaded.write_bytes(captured["motion.safetensors"])
    tensors, metadata = read_safetensors(uploaded)
    local_tensors, local = read_safetensors(run_folder / "motion.safetensors")
    assert metadata["backbone_checkpoint"] == "example:faces" and local["backbone_checkpoint"] != "example:faces"
    assert all((tensors[k] == v).all() for k, v in local_tensors.items())


def test_dry_run_uploads_nothing(run_folder, hub_api):
    result = CliRunner().invoke(app, ["push", str(run_folder), "--repo", "me/faces-motion", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert not hub_api and "would upload motion.safetensors" in result.output and "library_name: mocohd" in result.output


def test_push_errors(run_folder, hub_api, monkeypatch, tmp_path):
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    bad = CliRunner().invoke(app, ["push", str(run_folder), "--repo", "no-owner"])
    assert bad.exit_code == 2 and "OWNER/NAME" in bad.output
    unfinished = CliRunner().invoke(app, ["push", str(tmp_path), "--repo", "me/x"])
    assert unfinished.exit_code == 2 and "motion.safetensors" in unfinished.output

    def refuse(self, repo_id, **kwargs):
        response = type("Response", (), {"status_code": 401, "headers": {}, "request": None, "url": ""})()
        raise HfHubHTTPError("401 Client Error", response=response)

    monkeypatch.setattr(HfApi, "create_repo", refuse)
    result = CliRunner().invoke(app, ["push", str(run_folder), "--repo", "me/faces-motion"])
    assert result.exit_code == 2 and "not authorised" in result.output and "HF_TOKEN" in result.output
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    offline = CliRunner().invoke(app, ["push", str(run_folder), "--repo", "me/faces-motion"])
    assert offline.exit_code == 2 and "needs the network" in offline.output
