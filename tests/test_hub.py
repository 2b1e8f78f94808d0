"""hf:// references (mocohd_cli/infra/hub.py) against a local stand-in for the Hub (HF_ENDPOINT on
127.0.0.1): downloads through huggingface_hub's cache, revisions, offline mode, errors, tokens."""
from __future__ import annotations

import hashlib
import threading
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mocohd_cli import MocohdError
from mocohd_cli.cli import app
from mocohd_cli.infra.hub import HubFile, parse_hf, portable_reference, resolve

TOKEN = "hf_testtokenABCDEFGHIJKLMNOP"
COMMIT_MAIN, COMMIT_V1 = "a" * 40, "b" * 40


class FakeHub:
    """The /resolve/ endpoint of the Hub for a few repositories: HEAD gives the metadata
    huggingface_hub needs (commit, etag, size), GET the bytes; errors as the Hub reports them."""

    def __init__(self):
        self.repos: dict[str, dict[str, dict[str, bytes]]] = {}  # repo -> commit -> file -> bytes
        self.refs: dict[str, dict[str, str]] = {}  # repo -> branch/tag -> commit
        self.private: set[str] = set()
        self.failing: dict[str, int] = {}  # repo -> the HTTP status it answers with, whoever asks
        self.requests: list[tuple[str, str, str | None]] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_HEAD(self):
                self.answer(body=False)

            def do_GET(self):
                self.answer(body=True)

            def answer(self, body: bool):
                hub.requests.append((self.command, self.path, self.headers.get("authorization")))
                parts = self.path.split("?")[0].lstrip("/").split("/")
                if len(parts) < 5 or parts[2] != "resolve":
                    return self.error(404, "RepoNotFound")
                repo, revision, filename = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
                if repo in hub.failing:
                    return self.error(hub.failing[repo], "")
                if repo not in hub.repos:
                    return self.error(404, "RepoNotFound")
                if repo in hub.private and self.headers.get("authorization") != f"Bearer {TOKEN}":
                    return self.error(401, "RepoNotFound")
                commit = hub.refs[repo].get(revision, revision)
                if commit not in hub.repos[repo]:
                    return self.error(404, "RevisionNotFound")
                files = hub.repos[repo][commit]
                if filename not in files:
                    return self.error(404, "EntryNotFound", commit)
                data = files[filename]
                self.send_response(200)
                self.send_header("X-Repo-Commit", commit)
                self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if body:
                    self.wfile.write(data)

            def error(self, status: int, code: str, commit: str | None = None):
                self.send_response(status)
                if code:
                    self.send_header("X-Error-Code", code)
                if commit:
                    self.send_header("X-Repo-Commit", commit)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def add(self, repo: str, commit: str, files: dict[str, bytes], *refs: str) -> None:
        self.repos.setdefault(repo, {})[commit] = files
        self.refs.setdefault(repo, {}).update({ref: commit for ref in refs})

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hub(monkeypatch, tmp_path):
    server = FakeHub()
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    for name in ("HF_TOKEN", "HF_HUB_OFFLINE", "MOCOHD_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # no token file of the machine's user
    server.add("org/models", COMMIT_MAIN, {"weights/g.bin": b"version 2", "notes.txt": b"hi"}, "main")
    server.add("org/models", COMMIT_V1, {"weights/g.bin": b"version 1"}, "v1")
    yield server
    server.stop()


# -- parsing -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    ("hf://org/repo/motion.safetensors", HubFile("org/repo", "motion.safetensors")),
    ("hf://org/repo/sub/dir/g.pt@v1.0", HubFile("org/repo", "sub/dir/g.pt", "v1.0")),
    ("hf://org/repo/g.pt@refs/pr/3", HubFile("org/repo", "g.pt", "refs/pr/3")),
    ("hf://org/repo@" + COMMIT_V1 + "/g.pt", HubFile("org/repo", "g.pt", COMMIT_V1)),
    ("hf://datasets/org/stats/real.npz", HubFile("org/stats", "real.npz", None, "dataset")),
    ("hf:/org/repo/g.pt", HubFile("org/repo", "g.pt")),  # what pathlib leaves of hf://
])
def test_references_parse(text, expected):
    assert parse_hf(text) == expected
    assert parse_hf(expected.reference) == expected


@pytest.mark.parametrize("text, why", [
    ("hf://org/repo", "names no file"), ("hf://org/repo/", "empty"), ("hf://org/repo/a/../b.pt", "'..'"),
    ("hf://-bad/repo/g.pt", "not a valid owner"), ("hf://org/repo/g.pt@", "nothing follows"),
    ("hf://org/repo@v1/g.pt@v2", "two revisions"),
    ("hf://org/repo/g.pt@../../etc", "revision"), ("hf://org/repo/g.pt@v1..v2", "revision"),
    ("hf://org/repo/g.pt@refs//pr", "revision"), ("hf://org/repo/g.pt@refs/pr/", "revision"),
    ("hf://org/repo/g.pt@main?x=1", "revision"), ("hf://org/repo/g.pt@%2e%2e", "revision"),
    ("hf://org/repo/g.pt@/main", "revision"), ("hf://org/repo/g.pt@ma in", "revision"),
])
def test_malformed_references_are_one_clear_error(text, why):
    with pytest.raises(MocohdError) as error:
        parse_hf(text)
    assert why in error.value.message and text in error.value.message and "hf://OWNER/REPO/PATH" in error.value.fix


def test_plain_paths_and_other_values_pass_through():
    assert resolve("runs/faces/motion.safetensors") == "runs/faces/motion.safetensors"
    assert resolve(Path("g.pt")) == Path("g.pt") and resolve(None) is None
    assert resolve("mymodule:MyGenerator") == "mymodule:MyGenerator"  # not a registered scheme


# -- downloads ----------------------------------------------------------------------------------------
def test_download_revisions_and_cache(hub, tmp_path):
    latest = Path(resolve("hf://org/models/weights/g.bin"))
    assert latest.read_bytes() == b"version 2"
    assert latest.is_relative_to(tmp_path / "hf-cache")
    assert Path(resolve("hf://org/models/weights/g.bin@v1")).read_bytes() == b"version 1"
    assert Path(resolve(f"hf://org/models@{COMMIT_V1}/weights/g.bin")).read_bytes() == b"version 1"
    assert isinstance(resolve(Path("hf://org/models/notes.txt")), Path)
    # the file can be named again from its local path: the reference pins the commit
    assert portable_reference(latest) == f"hf://org/models/weights/g.bin@{COMMIT_MAIN}"
    assert portable_reference(latest.resolve()) == f"hf://org/models/weights/g.bin@{COMMIT_MAIN}"  # the blob
    assert portable_reference(tmp_path / "elsewhere.pt") is None


def test_offline_uses_the_cache_and_names_what_is_missing(hub, monkeypatch):
    first = resolve("hf://org/models/weights/g.bin")
    hub.stop()  # no server at all: only the cache can answer
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve("hf://org/models/weights/g.bin") == first
    with pytest.raises(MocohdError) as error:
        resolve("hf://org/models/notes.txt")
    assert "hf://org/models/notes.txt" in error.value.message and "HF_HUB_OFFLINE" in error.value.message


def test_mocohd_offline_counts_too(hub, monkeypatch):
    monkeypatch.setenv("MOCOHD_OFFLINE", "1")
    with pytest.raises(MocohdError, match="downloads are off"):
        resolve("hf://org/models/notes.txt")
    assert not hub.requests  # not one request went out


@pytest.mark.parametrize("reference, expected", [
    ("hf://org/nothing/g.bin", "repository org/nothing not found"),
    ("hf://org/models/missing.bin", "no file 'missing.bin'"),
    ("hf://org/models/weights/g.bin@v9", "revision 'v9' not found"),
])
def test_hub_errors_name_the_reference_and_the_fix(hub, reference, expected):
    with pytest.raises(MocohdError) as error:
        resolve(reference)
    assert expected in error.value.message and reference in error.value.message and error.value.fix


def test_private_repositories_use_the_token_and_never_show_it(hub, monkeypatch):
    hub.add("me/private", COMMIT_MAIN, {"g.bin": b"secret weights"}, "main")
    hub.private.add("me/private")
    with pytest.raises(MocohdError) as error:
        resolve("hf://me/private/g.bin")
    assert "private" in error.value.message and "HF_TOKEN" in error.value.fix
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert Path(resolve("hf://me/private/g.bin")).read_bytes() == b"secret weights"
    assert any(auth == f"Bearer {TOKEN}" for _, _, auth in hub.requests)
    result = CliRunner().invoke(app, ["sample", "--motion", "hf://me/private/nothing.safetensors"])
    assert result.exit_code == 2 and TOKEN not in result.output
    # nor in a traceback (--debug), with the token sent and an HTTP error back from the server
    hub.failing["me/broken"] = 403
    requests = len(hub.requests)
    for args in (["sample", "--motion", "hf://me/private/nothing.safetensors"],
                 ["sample", "--motion", "hf://me/broken/motion.safetensors"]):
        debug = CliRunner().invoke(app, ["--debug", *args])
        assert isinstance(debug.exception, MocohdError), debug.output  # raised as it is: the traceback is shown
        shown = debug.output + "".join(traceback.format_exception(debug.exception))
        assert "Traceback" in shown and TOKEN not in shown
        chain, exc = [], debug.exception
        while exc is not None:  # every message of the chain, as any handler might print them
            chain += [str(exc), repr(exc), str(getattr(exc, "fix", ""))]
            exc = exc.__cause__ or exc.__context__
        assert TOKEN not in " ".join(chain)
    assert "HTTP 403" in str(debug.exception) and "not authorised" in str(debug.exception)
    assert all(auth == f"Bearer {TOKEN}" for _, _, auth in hub.requests[requests:])  # the token was sent


# -- where references are used ---------------------------------------------------------------------------
def test_motion_and_its_recorded_backbone_come_from_the_hub(hub, tiny_stylegan2_checkpoint, tmp_path):
    """`mocohd sample --motion hf://...`: the motion file records its backbone as an hf:// reference too."""
    from mocohd_cli import MotionGenerator

    motion = MotionGenerator(32, h_dim=8, n_pca=8)
    path = motion.save(tmp_path / "m.safetensors", backbone="stylegan2", backbone_name="stylegan2",
                       backbone_checkpoint="hf://org/backbones/tiny.pt@v1")
    hub.add("org/backbones", COMMIT_V1, {"tiny.pt": tiny_stylegan2_checkpoint.read_bytes()}, "v1")
    hub.add("org/motion", COMMIT_MAIN, {"motion.safetensors": path.read_bytes()}, "main")
    result = CliRunner().invoke(app, ["sample", "--motion", "hf://org/motion/motion.safetensors", "--num-videos", "1",
                                      "--frames", "2", "--format", "gif", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "out").glob("*.gif"))) == 1


def test_detector_files_can_be_hub_references(hub):
    from mocohd_cli.evaluation.detectors import parse_detector_options

    hub.add("org/detectors", COMMIT_MAIN, {"i3d.pt": b"torchscript bytes"}, "main")
    paths = parse_detector_options(["i3d=hf://org/detectors/i3d.pt"])
    assert paths["i3d"].read_bytes() == b"torchscript bytes"


def test_encoders_weights_and_latents_files_can_be_hub_references(hub, tiny_stylegan2_checkpoint, tmp_path):
    """--encoder, --encoder-weights and --latents resolve as --motion does (commands/options.py)."""
    from mocohd_cli import MotionGenerator
    from mocohd_cli.commands.options import given_values

    hub.add("org/files", COMMIT_MAIN, {"enc.safetensors": b"encoder", "w.safetensors": b"weights"}, "main")
    given = given_values({"encoder": "hf://org/files/enc.safetensors", "encoder_weights": "hf://org/files/w.safetensors",
                          "out": "hf://not/resolved/here"})
    assert Path(given["encoder"]).read_bytes() == b"encoder" and Path(given["encoder_weights"]).read_bytes() == b"weights"
    assert given["out"] == "hf://not/resolved/here"
    # a latents file on the Hub replays the same bytes
    motion = MotionGenerator(32, h_dim=8, n_pca=8).save(tmp_path / "m.safetensors", backbone="stylegan2",
                                                        backbone_checkpoint=str(tiny_stylegan2_checkpoint))
    common = ["--motion", str(motion), "--format", "gif"]
    made = CliRunner().invoke(app, ["sample", *common, "-n", "1", "--frames", "2", "--out", str(tmp_path / "a"),
                                    "--save-latents", str(tmp_path / "l.npz")])
    assert made.exit_code == 0, made.output
    hub.add("org/latents", COMMIT_MAIN, {"l.npz": (tmp_path / "l.npz").read_bytes()}, "main")
    replay = CliRunner().invoke(app, ["sample", *common, "--latents", "hf://org/latents/l.npz",
                                      "--out", str(tmp_path / "b")])
    assert replay.exit_code == 0, replay.output
    assert (tmp_path / "a" / "video_0000.gif").read_bytes() == (tmp_path / "b" / "video_0000.gif").read_bytes()
