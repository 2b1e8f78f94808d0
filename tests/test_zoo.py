"""The model zoo (mocohd_cli/workflows/zoo.py): the table, `zoo get` (download, sha256, conversion),
`zoo:NAME` / `example:NAME` references. Downloads come from a local HTTP server."""
from __future__ import annotations

import functools
import hashlib
import json
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mocohd_cli import MocohdError, MotionGenerator, load_backbone
from mocohd_cli.cli import app
from mocohd_cli.infra.hub import portable_reference, resolve
from mocohd_cli.workflows import zoo
from mocohd_cli.workflows.zoo import CONVERSIONS, ZOO, ZooEntry, ZooFile, fetch


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def files_server(tmp_path):
    """A plain HTTP server on 127.0.0.1 serving tmp_path/served."""
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def tiny_zoo(monkeypatch, files_server, tiny_stylegan2_checkpoint):
    """A zoo of a tiny StyleGAN2 (verified and unverified) and a released-style motion model for it."""
    root, url = files_server
    (root / "tiny.pt").write_bytes(tiny_stylegan2_checkpoint.read_bytes())
    digest = sha(root / "tiny.pt")
    entries = {
        "tiny": ZooEntry("tiny", "backbone", "tiny StyleGAN2", "MIT", url,
                         (ZooFile("tiny.pt", f"{url}/tiny.pt", digest),), "stylegan2", 32),
        "tiny-unverified": ZooEntry("tiny-unverified", "backbone", "tiny StyleGAN2", "MIT", url,
                                    (ZooFile("tiny.pt", f"{url}/tiny.pt", None),), "stylegan2", 32),
        "tiny-wrong": ZooEntry("tiny-wrong", "backbone", "tiny StyleGAN2", "MIT", url,
                               (ZooFile("tiny.pt", f"{url}/tiny.pt", "0" * 64),), "stylegan2", 32),
        "tiny-motion": ZooEntry("tiny-motion", "motion", "released-style motion", "MIT", "a drive folder",
                                (ZooFile("modelR_epoch_*.pth", None, None), ZooFile("pca_comp.npy", None, None),
                                 ZooFile("pca_stdev.npy", None, None)), "import-motion", 32, backbone="tiny"),
    }
    monkeypatch.setattr(zoo, "ZOO", entries)
    return root, digest


def test_the_table_is_complete_and_consistent():
    for entry in ZOO.values():
        assert entry.kind in ("backbone", "motion") and entry.convert in CONVERSIONS and entry.license
        assert entry.page and entry.description and entry.resolution in (128, 256, 512, 1024)
        for file in entry.files:
            assert file.sha256 is None or (len(file.sha256) == 64 and int(file.sha256, 16) >= 0)
            assert file.url is None or file.url.startswith(("https://", "hf://"))
        if entry.kind == "motion":
            assert ZOO[entry.backbone].kind == "backbone" and ZOO[entry.backbone].resolution == entry.resolution
    assert ZOO["biggan-deep-128"].verified and not ZOO["stylegan2-ffhq-256"].verified
    assert {"stylegan2-ffhq-256", "stylegan2-ffhq-1024", "biggan-deep-128", "biggan-deep-256",
            "biggan-deep-512", "motion-ffhq-vox"} <= set(ZOO)


def test_zoo_list_says_which_entries_are_unverified():
    result = CliRunner().invoke(app, ["zoo", "list"])
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): line for line in result.output.splitlines() if line.count("│") > 3}
    assert "UNVERIFIED" in rows["stylegan2-ffhq-256"] and "verified" in rows["biggan-deep-128"]
    assert "UNVERIFIED" not in rows["biggan-deep-128"] and "example:faces" in rows


def test_unverified_entries_are_refused_without_an_explicit_choice(tiny_zoo):
    result = CliRunner().invoke(app, ["zoo", "get", "tiny-unverified"])
    assert result.exit_code == 2 and "no verified sha256" in result.output and "--trust-unverified" in result.output
    with pytest.raises(MocohdError, match="not fetched implicitly"):
        resolve("zoo:tiny-unverified")
    assert not zoo.entry_dir("tiny-unverified").exists()


def test_get_downloads_checks_converts_and_resolves(tiny_zoo, tiny_stylegan2):
    _, digest = tiny_zoo
    result = CliRunner().invoke(app, ["zoo", "get", "tiny"])
    assert result.exit_code == 0, result.output
    out = zoo.artefact_path(zoo.ZOO.get("tiny"))
    assert out.suffix == ".safetensors" and "--checkpoint zoo:tiny" in result.output
    record = json.loads((out.parent / "zoo.json").read_text())
    assert record["files"] == {"tiny.pt": digest} and record["checked_against"] == "the zoo's table"
    assert resolve("zoo:tiny") == str(out) and portable_reference(out) == "zoo:tiny"
    loaded = load_backbone(checkpoint="zoo:tiny")  # a reference wherever a checkpoint path goes
    z = torch.randn(2, loaded.z_dim)
    assert torch.allclose(loaded.mapping(z), tiny_stylegan2.mapping(z), atol=1e-5)


def test_a_sha256_mismatch_is_refused_and_nothing_is_cached(tiny_zoo):
    result = CliRunner().invoke(app, ["zoo", "get", "tiny-wrong"])
    assert result.exit_code == 2 and "expected " + "0" * 64 in result.output
    assert zoo.fetched(zoo.ZOO.get("tiny-wrong")) is None


def test_explicit_hashes_and_trust(tiny_zoo):
    _, digest = tiny_zoo
    bad = CliRunner().invoke(app, ["zoo", "get", "tiny-unverified", "--sha256", "1" * 64])
    assert bad.exit_code == 2 and "expected " + "1" * 64 in bad.output
    good = CliRunner().invoke(app, ["zoo", "get", "tiny-unverified", "--sha256", f"tiny.pt={digest}"])
    assert good.exit_code == 0, good.output
    assert json.loads((zoo.entry_dir("tiny-unverified") / "zoo.json").read_text())["checked_against"] \
        == "given --sha256"
    trusted = fetch("tiny-unverified", trust_unverified=True, force=True)
    record = json.loads((trusted.parent / "zoo.json").read_text())
    assert record["files"]["tiny.pt"] == digest and "unverified" in record["checked_against"]
    with pytest.raises(MocohdError, match="contradicts"):
        fetch("tiny", sha256=["tiny.pt=" + "2" * 64], force=True)


def test_release_motion_models_are_imported_from_local_files(tiny_zoo, tmp_path):
    release = tmp_path / "release"
    release.mkdir()
    torch.manual_seed(0)
    source = MotionGenerator(32, h_dim=8, n_pca=8)
    state = {k: v for k, v in source.state_dict().items() if not k.startswith("pca_")}
    torch.save(state, release / "modelR_epoch_30.pth")
    np.save(release / "pca_comp.npy", np.linalg.qr(np.random.default_rng(0).normal(size=(32, 32)))[0][:16])
    np.save(release / "pca_stdev.npy", np.linspace(2, 1, 16).astype(np.float32))
    missing = CliRunner().invoke(app, ["zoo", "get", "tiny-motion", "--trust-unverified"])
    assert missing.exit_code == 2 and "--from" in missing.output and "a drive folder" in missing.output
    result = CliRunner().invoke(app, ["zoo", "get", "tiny-motion", "--trust-unverified", "--from", str(release)])
    assert result.exit_code == 0, result.output
    assert "--motion zoo:tiny-motion" in result.output
    from mocohd_cli.models.motion import load_motion_and_backbone, read_motion_info

    path = Path(resolve("zoo:tiny-motion"))
    info = read_motion_info(path)
    assert portable_reference(info["backbone_checkpoint"]) == "zoo:tiny"  # its backbone was fetched first
    _, motion, _ = load_motion_and_backbone(path)
    assert torch.equal(motion.w, source.w)


def test_example_references():
    path = Path(resolve("example:faces"))
    assert path.name == "stylegan2_faces_64.safetensors" and portable_reference(path) == "example:faces"
    with pytest.raises(MocohdError, match="no example backbone|unknown"):
        resolve("example:nothing")
