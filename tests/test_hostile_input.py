"""Hostile and careless input: every case is one clear error (exit 2, the file named, no
traceback), nothing half-written, no code run, and no unbounded work (each test runs under a
timeout: a regression shows as a hang, which the timeout turns into a failure)."""
from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from mocohd_cli.cli import app
from mocohd_cli.infra.errors import MocohdError
from mocohd_cli.infra.pickle_scan import scan_pickle
from mocohd_cli.infra.runs import RunLock
from mocohd_cli.models.motion import MotionGenerator
from test_train import TINY, cli_args


runner = CliRunner()
pytestmark = pytest.mark.timeout(120, method="thread")  # a hang inside C code ignores signals
EVIL_SOURCE = """
import pathlib
pathlib.Path(__file__).with_name("CODE_RAN").write_text("the planted module was imported")
from mocohd_cli.models.backbone import ImageGenerator
class Evil(ImageGenerator):
    name = "evil"
"""


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def assert_clear_error(result, *needles):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output, result.output
    for needle in needles:
        assert str(needle) in result.output, result.output


# -- building hostile files --------------------------------------------------------------------------
def forge_safetensors(source: Path, target: Path, *, meta: dict | None = None, tensors: dict | None = None,
                      drop_meta: tuple = ()) -> Path:
    """A copy of a .safetensors file with metadata entries replaced (values as given: strings)."""
    from safetensors import safe_open

    with safe_open(str(source), framework="pt") as handle:
        old_meta = dict(handle.metadata() or {})
    values = {**load_file(str(source)), **(tensors or {})}
    new_meta = {k: v for k, v in {**old_meta, **(meta or {})}.items() if k not in drop_meta}
    save_file(values, str(target), metadata=new_meta)
    return target


def nested_tuple_pickle(levels: int) -> bytes:
    """{t: 0} where t holds the previous tuple twice, `levels` times over: 2**levels objects to hash."""
    out = bytearray(b"\x80\x02}K\x01q\x000")  # PROTO 2, {}, 1 memoised as entry 0 and popped
    for i in range(levels):
        out += b"h" + bytes([i]) + b"h" + bytes([i]) + b"\x86q" + bytes([i + 1]) + b"0"  # (m[i], m[i]) -> m[i+1]
    out += b"h" + bytes([levels]) + b"K\x00s."  # {m[levels]: 0}
    return bytes(out)


def deep_pickle(depth: int) -> bytes:
    return b"\x80\x02" + b"(" * depth + b"K\x00" + b"t" * depth + b"."


def torch_zip_with_pickle(path: Path, data_pkl: bytes) -> Path:
    """A torch.save zip whose data.pkl is replaced (everything else as torch writes it)."""
    buffer = io.BytesIO()
    torch.save({}, buffer)
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as source, zipfile.ZipFile(path, "w") as target:
        for info in source.infolist():
            data = data_pkl if info.filename.endswith("data.pkl") else source.read(info)
            target.writestr(info, data)
    return path


@pytest.fixture
def motion_file(tiny_stylegan2, tiny_stylegan2_checkpoint, tmp_path):
    return MotionGenerator(tiny_stylegan2.latent_dim, h_dim=8, n_pca=4).save(
        tmp_path / "motion.safetensors", backbone="stylegan2", backbone_checkpoint=str(tiny_stylegan2_checkpoint))


@pytest.fixture
def backbone_export(tiny_stylegan2_checkpoint, tmp_path):
    out = tmp_path / "backbone.safetensors"
    assert run("convert", tiny_stylegan2_checkpoint, "--out", out).exit_code == 0
    return out


# -- 1. code is chosen only at the command line ----------------------------------------------------------
@pytest.mark.parametrize("form", ["file", "module"])
def test_motion_metadata_cannot_import_code(motion_file, tmp_path, monkeypatch, form):
    (tmp_path / "evil_backbone.py").write_text(EVIL_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = f"{tmp_path / 'evil_backbone.py'}:Evil" if form == "file" else "evil_backbone:Evil"
    planted = forge_safetensors(motion_file, tmp_path / "planted.safetensors", meta={"backbone": spec})
    result = run("sample", "--motion", planted, "-n", 1, "--frames", 2, "--out", tmp_path / "out")
    assert_clear_error(result, planted, "--backbone")
    assert not (tmp_path / "CODE_RAN").exists()


def test_bare_sample_with_a_planted_run_imports_nothing(motion_file, tmp_path, monkeypatch):
    (tmp_path / "evil_backbone.py").write_text(EVIL_SOURCE)
    run_dir = tmp_path / "mocohd-runs" / "train-1"
    run_dir.mkdir(parents=True)
    forge_safetensors(motion_file, run_dir / "motion.safetensors",
                      meta={"backbone": f"{tmp_path / 'evil_backbone.py'}:Evil"})
    monkeypatch.chdir(tmp_path)
    assert_clear_error(run("sample", "-n", 1, "--frames", 2), "motion.safetensors")
    assert not (tmp_path / "CODE_RAN").exists()


def test_backbone_metadata_cannot_import_code(backbone_export, tmp_path):
    (tmp_path / "evil_backbone.py").write_text(EVIL_SOURCE)
    planted = forge_safetensors(backbone_export, tmp_path / "planted.safetensors",
                                meta={"mocohd_backbone": f"{tmp_path / 'evil_backbone.py'}:Evil"})
    for args in (["sample", "--checkpoint", planted, "-n", 1, "--frames", 2, "--out", tmp_path / "o"],
                 ["convert", planted, "--out", tmp_path / "c.safetensors"]):
        assert_clear_error(run(*args), planted, "--backbone")
    assert not (tmp_path / "CODE_RAN").exists()


def test_code_named_at_the_command_line_still_loads(tmp_path):
    """The user's own --backbone file.py:Class is trusted: the refusal is for metadata only."""
    from mocohd_cli.models.backbone import resolve_backbone_class

    (tmp_path / "mine.py").write_text(EVIL_SOURCE)
    assert resolve_backbone_class(f"{tmp_path / 'mine.py'}:Evil").name == "evil"
    assert (tmp_path / "CODE_RAN").exists()


# -- 2. bounded work on pickles ------------------------------------------------------------------------
def test_the_bomb_builder_is_a_real_pickle():
    import pickle

    assert len(next(iter(pickle.loads(nested_tuple_pickle(3))))) == 2  # small: loads; large: refused


@pytest.mark.parametrize("payload", ["hash_bomb", "deep"])
@pytest.mark.parametrize("container", ["pt", "pkl"])
def test_pickles_that_would_hang_are_refused(tmp_path, container, payload):
    data = nested_tuple_pickle(62) if payload == "hash_bomb" else deep_pickle(5000)
    path = tmp_path / f"bomb.{container}"
    if container == "pt":
        torch_zip_with_pickle(path, data)
    else:
        path.write_bytes(data)
    # loaded, or (a torch file) first peeked into by the plugins' `recognizes`
    for named in (["--backbone", "stylegan2"], []) if container == "pt" else (["--backbone", "stylegan2"],):
        result = run("sample", *named, "--checkpoint", path, "-n", 1, "--out", tmp_path / "o")
        assert_clear_error(result, path, "expand" if payload == "hash_bomb" else "levels deep")
    assert not (tmp_path / "o").exists()


def test_compressed_torch_zip_members_are_refused(tmp_path):
    buffer = io.BytesIO()
    torch.save({"x": torch.zeros(1000)}, buffer)
    path = tmp_path / "deflated.pt"
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as source, \
            zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            target.writestr(info.filename, source.read(info))
    assert_clear_error(run("sample", "--backbone", "stylegan2", "--checkpoint", path, "-n", 1,
                           "--out", tmp_path / "o"), path, "compressed")


def test_forged_length_prefix_is_a_short_read_not_an_allocation(tmp_path):
    forged = b"\x80\x04\x8e" + (2**60).to_bytes(8, "little") + b"abc"  # BINBYTES8 claiming an exabyte
    with pytest.raises(MocohdError, match="not a well-formed pickle"):
        scan_pickle(io.BytesIO(forged))


# -- 3. sizes from metadata are checked against the tensors before anything is allocated ---------------------
@pytest.mark.parametrize("edit, needle", [
    ({"h_dim": "8000"}, "h_dim 8000"),
    ({"h_dim": "1000000000"}, "h_dim"),
    ({"latent_dim": "-3"}, "latent_dim"),
    ({"n_pca": "9" * 5000}, "n_pca"),
    ({"w_residual": "NaN"}, "w_residual"),
    ({"w_residual": "[1, 2]"}, "w_residual"),
    ({"fps": "0"}, "fps"),
    ({"backbone_checkpoint": "[\"a\", \"b\"]"}, "backbone_checkpoint"),
    ({"format_version": "99"}, "format_version"),
])
def test_forged_motion_metadata_is_one_clear_error(motion_file, tmp_path, edit, needle):
    forged = forge_safetensors(motion_file, tmp_path / "forged.safetensors", meta=edit)
    result = run("sample", "--motion", forged, "-n", 1, "--frames", 2, "--out", tmp_path / "o")
    assert_clear_error(result, forged, needle)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("dropped", ["h_dim", "latent_dim"])
def test_motion_metadata_missing_a_size(motion_file, tmp_path, dropped):
    forged = forge_safetensors(motion_file, tmp_path / "forged.safetensors", drop_meta=(dropped,))
    assert_clear_error(run("sample", "--motion", forged, "-n", 1, "--out", tmp_path / "o"), forged, dropped)


def test_non_finite_weights_are_refused(motion_file, backbone_export, tmp_path):
    tensors = load_file(str(motion_file))
    bad_motion = forge_safetensors(motion_file, tmp_path / "nan_motion.safetensors",
                                   tensors={"pca_stdev": torch.full_like(tensors["pca_stdev"], float("nan"))})
    assert_clear_error(run("sample", "--motion", bad_motion, "-n", 1, "--out", tmp_path / "o"), "pca_stdev", "NaN")
    weights = load_file(str(backbone_export))
    bad_backbone = forge_safetensors(backbone_export, tmp_path / "inf.safetensors",
                                     tensors={"conv1.conv.weight": weights["conv1.conv.weight"] * float("inf")})
    assert_clear_error(run("sample", "--checkpoint", bad_backbone, "-n", 1, "--out", tmp_path / "o"),
                       "conv1.conv.weight", bad_backbone)


def test_forged_stylegan2_config_is_refused_before_building(backbone_export, tmp_path):
    from safetensors import safe_open

    with safe_open(str(backbone_export), framework="pt") as handle:
        config = json.loads(handle.metadata()["config"])
    huge = {**config, "channels": {k: 1_000_000 for k in config["channels"]}}
    forged = forge_safetensors(backbone_export, tmp_path / "huge.safetensors", meta={"config": json.dumps(huge)})
    assert_clear_error(run("convert", forged, "--out", tmp_path / "c.safetensors"), forged, "channels")
    mlp = forge_safetensors(backbone_export, tmp_path / "mlp.safetensors",
                            meta={"config": json.dumps({**config, "n_mlp": 100_000})})
    assert_clear_error(run("convert", mlp, "--out", tmp_path / "c.safetensors"), mlp, "n_mlp")


@pytest.mark.parametrize("config, needle", [
    ({"layers": [[False, 16, 16]] * 200_000}, "layers"),
    ({"channel_width": 4096}, "weights"),
    ({"z_dim": "big"}, "z_dim"),
    ({"layers": "none"}, "layers"),
    ({"eps": float("inf")}, "eps"),
])
def test_forged_biggan_config_is_one_clear_error(tmp_path, config, needle):
    folder = tmp_path / "biggan"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config).replace("Infinity", "1e999"))
    torch.save({"embeddings.weight": torch.zeros(2, 2)}, folder / "pytorch_model.bin")
    result = run("sample", "--backbone", "biggan", "--checkpoint", folder, "-n", 1, "--out", tmp_path / "o")
    assert_clear_error(result, "config.json" if needle != "weights" else folder, needle)


def test_compressed_zip_bomb_in_a_dataset_is_bounded(tmp_path):
    from mocohd_cli.data import storage

    path = tmp_path / "bomb.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("clip/video.mp4", b"\0" * (storage.MAX_COMPRESSED_MEMBER + 1))
    assert path.stat().st_size < 2 << 20
    with pytest.raises(MocohdError, match="expands to"):
        storage.open_storage(path).read("clip/video.mp4")


def test_huge_digit_runs_in_member_names_sort_without_int():
    from mocohd_cli.data.storage import natural_key

    names = ["f" + "9" * 5000, "f10", "f2"]
    assert sorted(names, key=natural_key) == ["f2", "f10", names[0]]


# -- 4/6/7. settings that would end in garbage or a traceback ------------------------------------------------
@pytest.fixture
def train_args(tiny_stylegan2_checkpoint, tiny_videos, tmp_path):
    return ["train", "--checkpoint", tiny_stylegan2_checkpoint, "--data", tiny_videos, "--out", tmp_path / "run",
            *cli_args({**TINY, "iterations": 1})]


@pytest.mark.parametrize("extra, needle", [
    (["--fps", "0"], "--fps"),
    (["--fps", "1e12"], "--fps"),
    (["--fps", "100", "--sample-format", "gif"], "gif"),
    (["--truncation", "nan"], "truncation"),
    (["--lr", "inf"], "lr"),
    (["--frames", "100000"], "--frames"),
    (["--batch-size", "100000", "--frames", "1000"], "GiB"),
    (["--seed", str(10**30)], "seed"),
    (["--seed", "-1"], "--seed"),
    (["--beta1", "5"], "--beta1"),
    (["--device", "meta"], "meta"),
    (["--device", "mps"], "mps"),
    (["--device", "cuda:7"], "cuda"),
])
def test_bad_training_options_fail_before_training(train_args, tmp_path, extra, needle):
    assert_clear_error(run(*train_args, *extra), needle)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("toml, needle", [
    ('checkpoint_every = "x"', "'checkpoint-every' must be an integer"),
    ("g_steps = 2.5", "'g-steps' must be an integer"),
    ("beta1 = 5.0", "--beta1"),
    ("lr = nan", "finite"),
    ("classes = 3", "classes"),
])
def test_wrongly_typed_config_files(train_args, tmp_path, toml, needle):
    config = tmp_path / "bad.toml"
    config.write_text(toml + "\n")
    assert_clear_error(run(*train_args, "--config", config), needle)
    assert not (tmp_path / "run").exists()


# -- 5/8. run folders -------------------------------------------------------------------------------------------
def test_a_locked_run_folder_is_refused(train_args, tmp_path):
    with RunLock(tmp_path / "run"):
        assert_clear_error(run(*train_args), "another mocohd process")
        assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [".lock"]  # nothing written by the second
    assert run(*train_args).exit_code == 0  # free again once released


def test_out_that_cannot_be_a_run_folder(train_args, tiny_videos, tmp_path):
    base = [a for a in train_args]
    index = base.index("--out")
    for out, needle in (("", "--out is empty"), (tiny_videos / "run", "inside the dataset")):
        args = base[:index + 1] + [out] + base[index + 2:]
        assert_clear_error(run(*args), needle)
    (tmp_path / "afile").write_text("keep me")
    args = base[:index + 1] + [tmp_path / "afile"] + base[index + 2:]
    assert_clear_error(run(*args), "names a file")
    assert (tmp_path / "afile").read_text() == "keep me"
    assert not (tiny_videos / "run").exists()


def test_stale_temporaries_are_removed_and_disk_full_keeps_the_previous_state(train_args, tmp_path, monkeypatch):
    assert run(*train_args).exit_code == 0
    state = tmp_path / "run" / "state" / "latest.pt"
    stale = state.parent / ".latest.pt.k1ll3d.tmp.pt"
    stale.write_bytes(b"\0" * 1000)
    before = state.read_bytes()

    def disk_full(*_args, **_kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:783] . PytorchStreamWriter failed writing file "
                           "data/3: file write failed")

    monkeypatch.setattr(torch, "save", disk_full)
    result = run(*train_args, "--resume", "--iterations", "2")
    assert_clear_error(result, "latest.pt", "cannot write")
    assert not stale.exists()  # removed when the run took its folder
    assert state.read_bytes() == before  # the previous state is intact
    assert not list(state.parent.glob(".*tmp*"))


# -- 11/7. training states that are damaged or edited ----------------------------------------------------------
@pytest.mark.parametrize("edit, needle", [
    (lambda s: {}, "no 'step'"),
    (lambda s: [1, 2], "mapping"),
    (lambda s: {**s, "step": "abc"}, "'step' must be an integer"),
    (lambda s: {**s, "step": 1_000_000}, "optimiser"),
    (lambda s: {**s, "rng": {"torch": torch.zeros(3)}}, "rng"),
    (lambda s: {**s, "opt_g": {"state": {}, "param_groups": []}}, "opt_g"),
    (lambda s: {**s, "motion": {"w": torch.zeros(2)}}, "motion"),
])
def test_damaged_training_states(train_args, tmp_path, edit, needle):
    assert run(*train_args).exit_code == 0
    state_path = tmp_path / "run" / "state" / "latest.pt"
    torch.save(edit(torch.load(state_path, weights_only=True)), state_path)
    assert_clear_error(run(*train_args, "--resume", "--iterations", "3"), state_path, needle)


# -- 10. special files are never opened for reading ------------------------------------------------------------
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifos_and_devices_are_refused(tmp_path, tiny_stylegan2_checkpoint):
    fifo = tmp_path / "ckpt.pt"
    os.mkfifo(fifo)
    assert_clear_error(run("sample", "--checkpoint", fifo, "-n", 1, "--out", tmp_path / "o"), fifo, "FIFO")
    folder = tmp_path / "biggan"
    folder.mkdir()
    os.mkfifo(folder / "config.json")
    torch.save({}, folder / "pytorch_model.bin")
    assert_clear_error(run("sample", "--backbone", "biggan", "--checkpoint", folder, "-n", 1,
                           "--out", tmp_path / "o"), "config.json")
    labels = tmp_path / "labels.txt"
    os.mkfifo(labels)
    assert_clear_error(run("sample", "--backbone", "biggan", "--labels", labels, "--class", "cat", "-n", 1,
                           "--out", tmp_path / "o"), labels)
    assert_clear_error(run("sample", "--checkpoint", "/dev/zero", "-n", 1, "--out", tmp_path / "o"), "/dev/zero")


def test_sixteen_bit_png_frames_are_scaled_not_clipped(tmp_path):
    """A 16-bit grey frame of 30000/65535 is mid-grey (117), not white (Pillow's own conversion clips)."""
    import numpy as np
    from PIL import Image

    from mocohd_cli.data.decode import decode_image
    from mocohd_cli.data.storage import open_storage

    folder = tmp_path / "clip"
    folder.mkdir()
    Image.fromarray(np.full((8, 8), 30000, dtype=np.uint16)).save(folder / "frame_0.png")
    assert Image.open(folder / "frame_0.png").mode.startswith("I")
    pixels = decode_image(open_storage(tmp_path), "clip/frame_0.png")
    assert pixels.shape == (8, 8, 3) and np.all(pixels == round(30000 / 257))


# -- found by review: evasions of the pre-scan and messages that grow with the input --------------------------
def stale_memo_pickle(levels: int) -> bytes:
    """A list memoised while empty and filled afterwards, `levels` times over, each list holding the
    previous one twice: a scan that trusted the memo's snapshot would count about 2 objects."""
    import struct

    def put(i):
        return b"r" + struct.pack("<I", i)  # LONG_BINPUT

    def get(i):
        return b"j" + struct.pack("<I", i)  # LONG_BINGET

    out = b"\x80\x02]" + put(0)  # PROTO 2, an empty list as memo 0
    for i in range(1, levels + 1):
        out += b"]" + put(i) + b"(" + get(i - 1) + get(i - 1) + b"e0"  # EMPTY_LIST, PUT, MARK, 2 GETs, APPENDS, POP
    return out + b"}" + get(levels) + b"Ns."  # {m[levels]: None}


def legacy_torch_file(main_pickle: bytes) -> bytes:
    """torch.save's legacy format around a given object pickle (magic, protocol, system info, object, keys)."""
    import pickle

    header = b"".join(pickle.dumps(value, protocol=2) for value in (
        0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True,
                                       "type_sizes": {"short": 2, "int": 4, "long": 4}}))
    return header + main_pickle + pickle.dumps([], protocol=2)


def test_a_pickle_filled_after_memoising_is_counted_at_its_real_size(tmp_path):
    with pytest.raises(MocohdError, match="expand"):
        scan_pickle(io.BytesIO(stale_memo_pickle(60)))
    scan_pickle(io.BytesIO(stale_memo_pickle(5)))  # small: fine
    path = tmp_path / "state.pkl"
    path.write_bytes(stale_memo_pickle(60))
    assert_clear_error(run("sample", "--backbone", "stylegan2", "--checkpoint", path, "-n", 1,
                           "--out", tmp_path / "o"), path, "expand")


def test_changing_a_container_after_sharing_it_is_refused():
    shared_then_grown = b"\x80\x02]q\x00h\x00(K\x01e0."  # [] memoised, fetched again, then appended to
    with pytest.raises(MocohdError, match="after referring to it elsewhere"):
        scan_pickle(io.BytesIO(shared_then_grown))


def test_a_pickle_with_a_zip_appended_is_refused(tmp_path):
    """torch.load reads a file as a zip only if it starts with one; zipfile finds one anywhere: the
    pre-scan must not read the harmless zip while torch loads the pickle in front of it."""
    harmless = io.BytesIO()
    torch.save({"a": torch.zeros(1)}, harmless)
    path = tmp_path / "polyglot.pt"
    path.write_bytes(legacy_torch_file(nested_tuple_pickle(60)) + harmless.getvalue())
    for named in (["--backbone", "stylegan2"], []):
        assert_clear_error(run("sample", *named, "--checkpoint", path, "-n", 1, "--out", tmp_path / "o"),
                           path, "both a pickle and a zip")


def test_honest_long_lists_are_not_mistaken_for_deep_nesting():
    import pickle

    for protocol in (0, 2):
        scan_pickle(io.BytesIO(pickle.dumps({"ids": list(range(5000)), "x": [[1, 2], (3, 4)]}, protocol=protocol)))


def test_messages_about_huge_values_stay_short(tmp_path):
    """A 2**20-object tuple (within the scan's limits) as the only key of a network pickle: the
    error shows a few of its items, not all of them."""
    path = tmp_path / "odd.pkl"
    path.write_bytes(nested_tuple_pickle(20))
    result = run("sample", "--backbone", "stylegan2", "--checkpoint", path, "-n", 1, "--out", tmp_path / "o")
    assert_clear_error(result, path, "no 'G_ema'", "...")
    assert len(result.output) < 2000


def test_torch_advice_to_drop_weights_only_is_never_shown(tmp_path):
    path = tmp_path / "odd.pt"
    path.write_bytes(legacy_torch_file(nested_tuple_pickle(3)))
    result = run("sample", "--backbone", "stylegan2", "--checkpoint", path, "-n", 1, "--out", tmp_path / "o")
    assert_clear_error(result, path, "weights-only unpickler refused it")
    assert "weights_only` set to `False`" not in result.output


def test_a_null_fps_in_a_motion_file_means_absent(motion_file, tmp_path):
    forged = forge_safetensors(motion_file, tmp_path / "null_fps.safetensors", meta={"fps": "null"})
    result = run("sample", "--motion", forged, "-n", 1, "--frames", 2, "--out", tmp_path / "o")
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("edit, needle", [
    (lambda s: {**s, "eval": {"best": 10**400}}, None),
    (lambda s: _with_optimiser_step(s, torch.tensor([2.0, 2.0])), "not a number"),
    (lambda s: _with_optimiser_step(s, torch.tensor(float("nan"))), "not a number"),
    (lambda s: {**s, "config": {**s["config"], "frames": (1, 2)}}, "not a plain value"),
])
def test_more_damaged_training_states(train_args, tmp_path, edit, needle):
    assert run(*train_args).exit_code == 0
    state_path = tmp_path / "run" / "state" / "latest.pt"
    torch.save(edit(torch.load(state_path, weights_only=True)), state_path)
    result = run(*train_args, "--resume", "--iterations", "2")
    if needle is None:  # an unusable best score is dropped, not fatal
        assert result.exit_code == 0, result.output
    else:
        assert_clear_error(result, state_path, needle)


def _with_optimiser_step(state: dict, step):
    first = next(iter(state["opt_d"]["state"]))
    state["opt_d"]["state"][first]["step"] = step
    return state


@pytest.mark.parametrize("option, value", [("--h-dim", 10**8), ("--d-channels", 10**9), ("--pca-samples", 10**15),
                                           ("--num-samples", 10**11), ("--d-layers", 60)])
def test_counts_have_upper_bounds(train_args, tmp_path, option, value):
    assert_clear_error(run(*train_args, option, value), option, "must be <=")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("seed", [-1, 10**30])
def test_eval_seeds_are_checked(motion_file, tmp_path, seed):
    result = run("eval", "--motion", motion_file, "--metric", "fvd16", "--real", tmp_path, "--seed", seed)
    assert_clear_error(result, "--seed")


def test_huge_training_seeds_within_64_bits_work(train_args):
    assert run(*train_args, "--seed", 2**63 - 1).exit_code == 0
