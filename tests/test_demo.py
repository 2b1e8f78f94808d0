"""`mocohd demo`: the handlers (mocohd_cli/workflows/demo.py) on the shipped faces example, the page's
error messages, the command's options; and the served page through gradio_client against a real
`mocohd demo` process on 127.0.0.1 (the API endpoint /generate, bad input, files it will not serve)."""
from __future__ import annotations

import builtins
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import imageio.v3 as iio
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from mocohd_cli.cli import app
from mocohd_cli.infra.errors import MocohdError
from mocohd_cli.workflows import demo
from mocohd_cli.workflows.builtin import example_motion, shipped_example_motions
from mocohd_cli.workflows.sampling import LatentsFile

pytestmark = pytest.mark.skipif("faces" not in shipped_example_motions(), reason="needs the shipped faces example")
FACES = "example:faces"


@pytest.fixture
def session(tmp_path):
    return demo.DemoSession(demo.DemoOutputs(tmp_path / "out"), demo.DemoModels())


def frames_of(path: Path) -> np.ndarray:
    return iio.imread(path)


# -- models ------------------------------------------------------------------------------------------
def test_models_are_named_as_sample_names_them(tmp_path):
    faces = example_motion("faces")
    assert demo.resolve_model(FACES) == faces
    assert demo.resolve_model(f"  {faces}  ") == faces
    assert FACES in demo.example_models()
    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(MocohdError, match="holds no motion model"):
        demo.resolve_model(str(run))
    (run / "best.safetensors").write_bytes(faces.read_bytes())
    assert demo.resolve_model(str(run)) == run / "best.safetensors"  # a run folder: motion.safetensors, else best
    (run / "motion.safetensors").write_bytes(faces.read_bytes())
    assert demo.resolve_model(str(run)) == run / "motion.safetensors"
    for bad, message in [("", "no model given"), (None, "no model given"), (str(tmp_path / "nope.safetensors"),
                                                                           "no such motion model")]:
        with pytest.raises(MocohdError, match=message):
            demo.resolve_model(bad)


def test_an_hf_reference_resolves_through_the_hub_code(monkeypatch):
    # offline and not cached: the Hub code's own message, no download
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(MocohdError, match="hf://someone/model/motion.safetensors"):
        demo.resolve_model("hf://someone/model/motion.safetensors")


def test_models_load_once_per_file_and_truncation():
    models = demo.DemoModels(keep=2)
    faces = example_motion("faces")
    first = models.get(faces, 1.0)
    assert models.get(faces, 1.0) is first
    truncated = models.get(faces, 0.5)
    assert truncated is not first and truncated[0].truncation == 0.5
    models.get(faces, 0.7)  # a third: the least recently used goes
    assert models.get(faces, 1.0) is not first


# -- values ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,value", [("seed", -1), ("seed", 2 ** 31), ("frames", 0), ("frames", 129),
                                        ("num_videos", 17), ("frames", 2.5), ("fps", float("nan")),
                                        ("truncation", float("inf")), ("seed", "abc"), ("seed", None)])
def test_values_out_of_range_are_refused_with_the_control_named(name, value):
    with pytest.raises(MocohdError, match=name.replace("_", " ")):
        demo.bounded(name, value, integer=name not in ("fps", "truncation"))


def test_values_in_range_pass():
    assert demo.bounded("seed", 7.0) == 7 and isinstance(demo.bounded("seed", 7.0), int)
    assert demo.bounded("truncation", "0.5", integer=False) == 0.5
    assert demo.parse_classes(" 3, 7 ;9") == ["3", "7", "9"] and demo.parse_classes("") is None


def test_classes_for_conditional_backbones_only(session):
    conditional = SimpleNamespace(name="tiny-biggan", condition_dim=10)
    assert demo._classes(session, "3, 7", conditional) == [3, 7]
    assert demo._classes(session, "", conditional) is None  # random classes, as mocohd sample draws them
    with pytest.raises(MocohdError, match="out of range"):
        demo._classes(session, "12", conditional)
    with pytest.raises(MocohdError, match="no labels file"):
        demo._classes(session, "goldfish", conditional)
    labels = Path(session.outputs.root) / "labels.txt"
    labels.write_text("tench\ngoldfish\n")
    named = demo.DemoSession(session.outputs, session.models, labels=str(labels))
    assert demo._classes(named, "goldfish", conditional) == [1]
    with pytest.raises(MocohdError, match="unconditional"):
        demo._classes(session, "3", SimpleNamespace(name="faces", condition_dim=0))


# -- generate ----------------------------------------------------------------------------------------
def test_generate_writes_a_playable_grid_and_latents_that_replay(session):
    seen = []
    result = demo.generate(session, FACES, seed=5, num_videos=2, frames=6,
                           progress=lambda fraction, what: seen.append(fraction))
    video = frames_of(result.video)
    assert video.shape[0] == 6 and video.shape[-1] == 3
    latents = LatentsFile(result.latents)
    assert latents.count == 2 and latents.frames == 6
    assert seen[0] == 0.0 and seen[-1] == 1.0
    assert session.outputs.owns(result.video) and session.outputs.owns(result.latents)
    assert "2 video(s)" in result.message and "seed 5" in result.message
    again = demo.generate(session, FACES, seed=5, num_videos=2, frames=6)
    assert np.array_equal(np.load(again.latents)["trajectories"], latents.arrays["trajectories"])
    other = demo.generate(session, FACES, seed=6, num_videos=2, frames=6)
    assert not np.array_equal(np.load(other.latents)["trajectories"], latents.arrays["trajectories"])


def test_generate_modes_share_contents_and_motions(session):
    same_content = np.load(demo.generate(session, FACES, num_videos=3, frames=4, mode="same content").latents)
    assert np.array_equal(same_content["content"][0], same_content["content"][2])
    assert not np.array_equal(same_content["motion_noise"][0], same_content["motion_noise"][1])
    same_motion = np.load(demo.generate(session, FACES, num_videos=3, frames=4, mode="same motion").latents)
    assert np.array_equal(same_motion["motion_noise"][0], same_motion["motion_noise"][2])
    assert not np.array_equal(same_motion["content"][0], same_motion["content"][1])
    result = demo.generate(session, FACES, frames=4, mode="decomposition", rows=2, cols=3)
    grid = np.load(result.latents)
    assert grid["content"].shape[0] == 6 and result.video.name == "decomposition_2x3.mp4"
    assert np.array_equal(grid["content"][0], grid["content"][2])  # a row shares its content
    assert np.array_equal(grid["motion_noise"][0], grid["motion_noise"][3])  # a column its motion


def test_generate_uses_the_model_frame_rate_unless_given(session):
    result = demo.generate(session, FACES, num_videos=1, frames=3, fps=12)
    assert float(np.load(result.latents)["fps"]) == 12
    assert "12 fps" in result.message


@pytest.mark.parametrize("kwargs,message", [({"mode": "sideways"}, "unknown mode"),
                                            ({"classes": "3"}, "unconditional"),
                                            ({"frames": 500}, "frames must be"),
                                            ({"model": "nope/none"}, "no such motion model")])
def test_generate_refuses_bad_input(session, kwargs, message):
    with pytest.raises(MocohdError, match=message):
        demo.generate(session, **{"model": FACES, **kwargs})


def test_results_beyond_the_kept_number_are_removed(tmp_path):
    outputs = demo.DemoOutputs(tmp_path, keep=2)
    folders = [outputs.new("videos") for _ in range(3)]
    assert not folders[0].exists() and folders[1].is_dir() and folders[2].is_dir()
    assert not outputs.owns(tmp_path.parent / "elsewhere")


# -- animate -----------------------------------------------------------------------------------------
def test_animate_an_uploaded_image(session, tmp_path):
    face = frames_of(demo.generate(session, FACES, num_videos=1, frames=2).video)[0]
    Image.fromarray(face).save(tmp_path / "face.png")
    seen = []
    result = demo.animate_image(session, str(tmp_path / "face.png"), FACES, seed=1, frames=5, steps=3,
                                progress=lambda fraction, what: seen.append(what))
    assert frames_of(result.video).shape[0] == 5
    assert Image.open(result.compare).size[0] == 2 * Image.open(result.compare).size[1] or result.compare.is_file()
    assert LatentsFile(result.latents).frames == 5
    assert "PSNR" in result.message and any("inverting" in what for what in seen)


@pytest.mark.parametrize("content,message", [(b"not an image at all", "image"), (None, "no image uploaded")])
def test_animate_refuses_what_is_no_image(session, tmp_path, content, message):
    path = None
    if content is not None:
        path = tmp_path / "upload.png"
        path.write_bytes(content)
    with pytest.raises(MocohdError, match=message):
        demo.animate_image(session, None if path is None else str(path), FACES, steps=1)


# -- the page and the command ------------------------------------------------------------------------
def test_without_gradio_the_error_names_the_extra(monkeypatch):
    real_import = builtins.__import__

    def no_gradio(name, *args, **kwargs):
        if name == "gradio" or name.startswith("gradio."):
            raise ImportError("No module named 'gradio'")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "gradio", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_gradio)
    with pytest.raises(MocohdError, match=r"pip install 'mocohd\[demo\]'"):
        demo.require_gradio()
    result = CliRunner().invoke(app, ["demo", "--out", "unused"])
    assert result.exit_code == 2 and "mocohd[demo]" in result.output and "Traceback" not in result.output


def test_the_page_turns_errors_into_messages():
    gr = pytest.importorskip("gradio")
    from mocohd_cli.workflows.demo_app import page_messages

    with pytest.raises(gr.Error, match="frames must be"):
        with page_messages():
            demo.bounded("frames", 0)
    with pytest.raises(gr.Error, match=r"the call failed \(ZeroDivisionError\)") as caught:
        with page_messages():
            1 / 0
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_a_wrong_model_option_stops_the_command(tmp_path):
    pytest.importorskip("gradio")
    result = CliRunner().invoke(app, ["demo", "--model", str(tmp_path / "none.safetensors"), "--out",
                                      str(tmp_path / "out")])
    assert result.exit_code == 2 and "no such motion model" in result.output


# -- the served page, through gradio_client ----------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve_demo(out: Path, timeout: float = 120.0):
    """A `mocohd demo` process on 127.0.0.1 and a free port: (process, url). Waits until it answers."""
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False",
           "GRADIO_TEMP_DIR": str(out / "gradio"), "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
    log = open(out.parent / f"demo-{port}.log", "wb")
    process = subprocess.Popen([sys.executable, "-m", "mocohd_cli", "demo", "--port", str(port), "--out", str(out)],
                               stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"mocohd demo exited: {(out.parent / f'demo-{port}.log').read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                if answer.status == 200:
                    return process, url
        except (urllib.error.URLError, OSError):
            time.sleep(0.5)
    process.kill()
    raise RuntimeError(f"mocohd demo did not answer within {timeout} s")


def stop(process) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=20)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    pytest.importorskip("gradio")
    out = tmp_path_factory.mktemp("demo") / "out"
    process, url = serve_demo(out)
    yield url, out
    stop(process)


@pytest.mark.timeout(300)
def test_generate_endpoint_with_every_parameter_defaulted(served):
    from gradio_client import Client

    url, out = served
    client = Client(url, verbose=False)
    assert "/generate" in client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    video = client.predict(api_name="/generate")
    path = Path(video["video"] if isinstance(video, dict) else video)
    frames = frames_of(path)
    assert frames.shape[0] == demo.DEFAULTS["frames"]
    one, two = (frames_of(Path(str(client.predict(seed=seed, num_videos=1, frames=4, api_name="/generate"))))
                for seed in (1, 2))
    assert one.shape[0] == 4 and one.shape == two.shape and not np.array_equal(one, two)


@pytest.mark.timeout(300)
def test_bad_input_gets_a_message_and_the_server_keeps_serving(served, tmp_path):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    url, out = served
    client = Client(url, verbose=False)
    for kwargs, message in [({"seed": -3}, "seed must be"), ({"model": str(tmp_path / "x.safetensors")},
                                                             "no such motion model")]:
        with pytest.raises(AppError, match=message) as caught:
            client.predict(api_name="/generate", **kwargs)
        assert "Traceback" not in str(caught.value)
    upload = tmp_path / "broken.png"
    upload.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(AppError, match="broken.png") as caught:
        client.predict(handle_file(str(upload)), api_name="/animate")
    assert "Traceback" not in str(caught.value)
    text = tmp_path / "notes.txt"
    text.write_text("no image")
    with pytest.raises(AppError, match="(?i)invalid file type"):
        client.predict(handle_file(str(text)), api_name="/animate")
    assert Path(str(client.predict(num_videos=1, frames=2, api_name="/generate"))).is_file()


@pytest.mark.timeout(120)
def test_only_its_own_outputs_are_served(served, tmp_path):
    url, out = served
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the page")
    for path in (secret, Path(__file__).resolve(), Path("/etc/passwd")):
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(f"{url}gradio_api/file={path}", timeout=10)
        assert caught.value.code in (403, 404)


def test_the_server_binds_loopback_by_default():
    from mocohd_cli.commands.demo import demo as command

    import inspect

    defaults = inspect.signature(command).parameters
    assert defaults["host"].default.default == "127.0.0.1" and defaults["share"].default.default is False
