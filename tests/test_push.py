"""`mocohd push`, tested at the huggingface_hub API boundary: what would be uploaded, and the card."""
from __future__ import annotations

import tomllib

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
from mocohd_cli.infra.runs import dumps_toml
from mocohd_cli.models.motion import read_motion_info


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
    (run / "config.toml").write_text(dumps_toml({"mode": "in-domain", "data": "/data/faces-videos",
                                                      "iterations": 80, "frames": 8, "lr": 5e-4, "batch_size": 4}))
    (run / "log.txt").write_text("2026-01-01 00:00:00 eval at step 40: fvd16=321.5 (best so far: best.safetensors)\n"
                                 "2026-01-01 00:01:00 eval at step 80: fvd16=123.25\n")
    frames = [Image.fromarray(np.full((8, 8, 3), v, np.uint8)) for v in (0, 255)]
    frames[0].save(run / "samples" / "step_80.gif", save_all=True, append_images=frames[1:])
    append_provenance(run, device="cpu", step=0, argv=["mocohd", "train", "--token", "hf_abcdefghijklmnop"])
    return run


@pytest.fixture
def existing_repos():
    """Repository -> private, for the repositories on the stand-in Hub."""
    return {}


@pytest.fixture
def hub_api(monkeypatch, existing_repos):
    """HfApi.create_repo / repo_info / create_commit recorded instead of sent. As on the Hub,
    create_repo(exist_ok=True) leaves an existing repository's visibility as it is."""
    from huggingface_hub import HfApi

    calls = {}

    def create_repo(self, repo_id, **kwargs):
        calls["create_repo"] = (repo_id, kwargs)
        existing_repos.setdefault(repo_id, bool(kwargs.get("private")))

    def repo_info(self, repo_id, **kwargs):
        return type("ModelInfo", (), {"private": existing_repos[repo_id]})()

    def create_commit(self, repo_id, operations, **kwargs):
        calls["commit"] = (repo_id, {op.path_in_repo: op for op in operations}, kwargs)
        return type("Commit", (), {"commit_url": f"https://hub.example/{repo_id}/commit/1"})()

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "repo_info", repo_info)
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
    assert set(ops) == {"motion.safetensors", "config.toml", "sample.gif", "README.md"}  # provenance: opt-in
    assert "hf://me/faces-motion/motion.safetensors" in result.output and "/commit/1" in result.output
    assert "(private)" in result.output
    with_provenance = CliRunner().invoke(app, ["push", str(run_folder), "--repo", "me/other", "--provenance"])
    assert with_provenance.exit_code == 0, with_provenance.output
    assert "provenance.toml" in hub_api["commit"][1] and "(public)" in with_provenance.output


def test_private_is_refused_for_an_existing_public_repository(run_folder, hub_api, existing_repos):
    existing_repos["me/faces-motion"] = False
    result = CliRunner().invoke(app, ["push", str(run_folder), "--repo", "me/faces-motion", "--private"])
    assert result.exit_code == 2, result.output
    assert "already exists and is public" in " ".join(result.output.split()) and "commit" not in hub_api
    existing_repos["me/secret"] = True  # an existing private repository stays private, and says so
    result = CliRunner().invoke(app, ["push", str(run_folder), "--repo", "me/secret"])
    assert result.exit_code == 0 and "(private)" in result.output


def test_the_card_and_the_uploaded_motion_file(run_folder, hub_api, monkeypatch, tmp_path):
    captured = {}
    from huggingface_hub import HfApi

    def create_commit(self, repo_id, operations, **kwargs):  # read the staged files before they go away
        captured.update({op.path_in_repo: open(op.path_or_fileobj, "rb").read() for op in operations})

    monkeypatch.setattr(HfApi, "create_commit", create_commit)
    result = CliRunner().invoke(app, ["push", str(run_folder), "--repo", "me/faces-motion", "--provenance"])
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
    flat = " ".join(result.output.split())
    assert "would not upload provenance.toml" in flat and "--provenance" in flat and "visibility: public" in flat
    private = CliRunner().invoke(app, ["push", str(run_folder), "--repo", "me/x", "--dry-run", "--private",
                                       "--provenance"])
    assert "would upload provenance.toml" in private.output and "visibility: private" in private.output


def test_no_local_path_is_uploaded(tmp_path, hub_api, monkeypatch):
    """Paths in the motion file's metadata and in config.toml leave as references or file names."""
    from huggingface_hub import HfApi

    home = tmp_path / "home" / "alice"
    run = tmp_path / "run"
    run.mkdir()
    MotionGenerator(32, h_dim=8, n_pca=8).save(run / "motion.safetensors", backbone=f"{home}/mygen.py:Gen",
                                               backbone_name="mygen", backbone_checkpoint=str(home / "g.pt"),
                                               backbone_sha256="cd" * 32)
    (run / "config.toml").write_text(dumps_toml({
        "mode": "in-domain", "data": f"{home}/secret-project/videos/", "checkpoint": str(home / "g.pt"),
        "out": str(run), "backbone": f"{home}/mygen.py:Gen", "eval_detectors": [f"i3d={home}/det/i3d.pt"],
        "preset": "hf://org/x/y.pt", "iterations": 80}))
    append_provenance(run, device="cpu", step=0, argv=["mocohd", "train", "--data", str(home)])
    captured = {}

    def create_commit(self, repo_id, operations, **kwargs):
        captured.update({op.path_in_repo: open(op.path_or_fileobj, "rb").read() for op in operations})

    monkeypatch.setattr(HfApi, "create_commit", create_commit)
    result = CliRunner().invoke(app, ["push", str(run), "--repo", "me/faces-motion"])
    assert result.exit_code == 0, result.output
    assert set(captured) == {"motion.safetensors", "config.toml", "README.md"}
    for name, data in captured.items():
        assert str(tmp_path).encode() not in data and b"alice" not in data and b"secret-project" not in data, name
    uploaded = tmp_path / "uploaded.safetensors"
    uploaded.write_bytes(captured["motion.safetensors"])
    metadata = read_motion_info(uploaded)  # still a valid motion file
    assert metadata["backbone_checkpoint"] == "g.pt" and metadata["backbone"] == "mygen.py:Gen"
    config = tomllib.loads(captured["config.toml"].decode())
    assert config["data"] == "videos" and config["checkpoint"] == "g.pt" and config["out"] == "run"
    assert config["eval_detectors"] == ["i3d=i3d.pt"] and config["preset"] == "hf://org/x/y.pt"
    assert config["iterations"] == 80 and config["mode"] == "in-domain"
    assert "local file (g.pt" in captured["README.md"].decode()


@pytest.mark.parametrize("ref, expected", [
    ("/abs/g.pt", "not a reference"), ("g.pt", "not a reference"), ("zoo:no-such-entry", "no zoo entry"),
    ("example:no-such-domain", "no-such-domain"), ("hf://org/repo", "names no file"),
    ("hf://org/repo/g.pt@../../x", "revision"),
])
def test_backbone_ref_is_checked(run_folder, hub_api, ref, expected):
    result = CliRunner().invoke(app, ["push", str(run_folder), "--repo", "me/x", "--backbone-ref", ref, "--dry-run"])
    assert result.exit_code == 2, result.output
    assert expected in " ".join(result.output.split()) and "Traceback" not in result.output


@pytest.mark.parametrize("ref, base", [
    ("hf://org/gan/g.pt", "org/gan"), ("hf://org/gan@v1/sub/g.pt", "org/gan"), ("hf://org/gan/g.pt@refs/pr/2", "org/gan"),
    ("hf://datasets/org/stats/g.pt", None), ("zoo:biggan-deep-128", None), ("example:faces", None),
])
def test_the_cards_base_model(run_folder, hub_api, ref, base):
    result = CliRunner().invoke(app, ["push", str(run_folder), "--repo", "me/x", "--backbone-ref", ref, "--dry-run"])
    assert result.exit_code == 0, result.output
    meta = yaml.safe_load(result.output.split("---")[1])
    assert meta.get("base_model") == base and meta["mocohd"]["backbone"]["checkpoint"] == ref


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
