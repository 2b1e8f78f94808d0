"""Property-based fuzzing of every parser that reads an untrusted file: whatever the bytes or
values, the outcome is a result or one MocohdError, in bounded time (hypothesis' deadline), never
another exception, a hang or a huge allocation."""
from __future__ import annotations

import io
import json
import pickle
import zipfile

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mocohd_cli.infra.errors import MocohdError
from mocohd_cli.infra.files import torch_load_safely
from mocohd_cli.infra.pickle_scan import scan_pickle
from mocohd_cli.infra.safe_pickle import restricted_load
from mocohd_cli.models.motion import METADATA_FIELDS, parse_motion_metadata
from mocohd_cli.training.config import TrainConfig

pytestmark = [pytest.mark.timeout(300, method="thread"),
              pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning")]
FUZZ = settings(max_examples=150, deadline=3000, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                        HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)


def _mutate(data: bytes, edits: list[tuple[int, int]]) -> bytes:
    out = bytearray(data)
    for position, value in edits:
        out[position % len(out)] = value
    return bytes(out)


edits = st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=8)
NETWORK = pickle.dumps({"G_ema": {"w": [1.5, 2.5], "kwargs": {"z_dim": 8}}, "tuple": (1, (2, 3))}, protocol=4)


def _torch_bytes() -> bytes:
    buffer = io.BytesIO()
    torch.save({"w": torch.arange(6.0).reshape(2, 3), "step": 3, "nested": {"a": [1, 2]}}, buffer)
    return buffer.getvalue()


TORCH_FILE = _torch_bytes()


@FUZZ
@given(st.binary(max_size=400))
def test_scan_of_arbitrary_bytes(data):
    try:
        scan_pickle(io.BytesIO(data))
    except MocohdError:
        pass


python_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10) | st.binary(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner) | st.frozensets(st.integers(), max_size=3)
    | st.dictionaries(st.text(max_size=5), inner, max_size=4), max_leaves=20)


@FUZZ
@given(python_values, st.integers(0, 5), st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=3))
def test_scan_then_restricted_load_of_real_pickles(tmp_path_factory, value, protocol, changes):
    """Well-formed pickles of every protocol (and small mutations of them) pass the scan and load,
    or stop with one MocohdError; an unmutated plain value always loads back equal."""
    data = pickle.dumps(value, protocol=protocol)
    if not changes:
        scan_pickle(io.BytesIO(data))  # an honest pickle of any protocol passes the scan
    path = tmp_path_factory.mktemp("fuzz") / "value.pkl"
    path.write_bytes(_mutate(data, changes) if changes else data)
    try:
        loaded = restricted_load(path)
    except MocohdError:
        # protocols 0-2 name Python 2's __builtin__ and pickle bytes through codecs: the restricted
        # unpickler (made for network pickles, protocol 3+) refuses those globals
        assert changes or protocol < 3, "an honest pickle of plain data was refused"
        return
    if not changes:
        # a NaN inside compares unequal to a copy of itself (containers compare identical objects as equal,
        # so `value != value` misses it); the repr of plain data shows every value, NaN included
        assert loaded == value or repr(loaded) == repr(value)


@FUZZ
@given(edits)
def test_restricted_unpickler_on_mutated_pickles(tmp_path_factory, changes):
    path = tmp_path_factory.mktemp("fuzz") / "net.pkl"
    path.write_bytes(_mutate(NETWORK, changes))
    try:
        restricted_load(path)
    except MocohdError:
        pass


@FUZZ
@given(edits)
def test_torch_loader_on_mutated_files(tmp_path_factory, changes):
    path = tmp_path_factory.mktemp("fuzz") / "state.pt"
    # mutate only the pickle inside the zip: flips in the zip structure are refused by zipfile itself
    with zipfile.ZipFile(io.BytesIO(TORCH_FILE)) as source, zipfile.ZipFile(path, "w") as target:
        for info in source.infolist():
            data = source.read(info)
            target.writestr(info, _mutate(data, changes) if info.filename.endswith("data.pkl") else data)
    try:
        torch_load_safely(path)
    except MocohdError:
        pass


motion_keys = st.sampled_from([f.key for f in METADATA_FIELDS] + ["extra", "config"])


@FUZZ
@given(st.dictionaries(motion_keys, json_values.map(json.dumps) | st.text(max_size=30), max_size=12))
def test_motion_metadata_parser(tmp_path_factory, raw):
    raw = {**raw, "format": "mocohd-motion"}
    try:
        info = parse_motion_metadata(raw, tmp_path_factory.getbasetemp() / "m.safetensors")
    except MocohdError:
        return
    assert 1 <= info["n_pca"] <= info["latent_dim"] <= 65_536 and 1 <= info["h_dim"] <= 65_536
    assert info.get("fps") is None or (isinstance(info["fps"], float) and 1e-3 <= info["fps"] <= 1e3)
    assert all(info.get(key) is None or isinstance(info[key], str) for key in ("backbone", "backbone_checkpoint"))


biggan_keys = st.sampled_from(["output_dim", "z_dim", "class_embed_dim", "channel_width", "num_classes", "layers",
                               "attention_layer_position", "eps", "n_stats", "unknown"])


@FUZZ
@given(st.dictionaries(biggan_keys, json_values, max_size=9))
def test_biggan_config_parser(values):
    from mocohd_plugins.biggan.config import BigGANConfig

    try:
        config = BigGANConfig.from_dict(values)
    except MocohdError:
        return
    assert 0 < config.minimum_weights() < 10**13 and len(config.layers) <= 64


train_keys = st.sampled_from(["frames", "batch_size", "lr", "beta1", "seed", "fps", "classes", "device", "mode",
                              "h_dim", "w_residual", "truncation", "eval_every", "sample_format", "epochs",
                              "d_channels", "d_layers", "pca_samples", "num_samples", "queue_size"])


@FUZZ
@given(st.dictionaries(train_keys, json_values, max_size=8))
def test_training_config_parser(values):
    from mocohd_cli.training.config import UPPER_BOUNDS

    try:
        config = TrainConfig.from_dict(values)
        config.validate()
    except MocohdError:
        return
    for name, bound in UPPER_BOUNDS.items():  # what passes is bounded, so what is built is too
        assert getattr(config, name) is None or 0 <= getattr(config, name) <= bound
    assert all(isinstance(getattr(config, key), float) for key in ("lr", "beta1", "fps", "w_residual"))
