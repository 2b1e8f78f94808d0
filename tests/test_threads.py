"""Issue 36 item 1: --threads / $MOCOHD_THREADS on every computing command, a default that leaves busy
cores alone, and the setting in the run's provenance (mocohd_cli/infra/threads.py)."""
from __future__ import annotations

import pytest
import torch
import typer.main
from typer.testing import CliRunner

from mocohd_cli.cli import app
from mocohd_cli.infra import provenance, threads
from mocohd_cli.infra.errors import MocohdError

runner = CliRunner()
COMPUTING = [("train",), ("transfer",), ("pretrain",), ("train-encoder",), ("sample",), ("animate",),
             ("backbone-grid",), ("eval",), ("eval", "stats"), ("data", "make")]


@pytest.fixture(autouse=True)
def _no_thread_settings(monkeypatch):
    monkeypatch.delenv("MOCOHD_THREADS", raising=False)
    monkeypatch.setattr(threads, "_omp_threads_at_start", None)
    monkeypatch.setattr(threads, "_applied", None)


def _command(path):
    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]
    return command


@pytest.mark.parametrize("path", COMPUTING, ids=" ".join)
def test_every_computing_command_takes_threads(path):
    options = [option for param in _command(path).params for option in param.opts]
    assert "--threads" in options


def test_the_default_gives_way_on_an_oversubscribed_machine():
    assert threads.default_threads(cores=2, load=0.2) == 2
    assert threads.default_threads(cores=2, load=1.6) == 2  # passive threads beside one job: about even
    assert threads.default_threads(cores=2, load=2.3) == 1  # oversubscribed: one thread
    assert threads.default_threads(cores=2, load=5.0) == 1  # never below one
    assert threads.default_threads(cores=64, load=0.0) == threads.DEFAULT_MAX
    assert threads.default_threads(cores=8, load=10.4) == 5


def test_idle_threads_sleep():
    """`import mocohd_cli` (the CLI's first import) sets OMP_WAIT_POLICY=PASSIVE before torch loads OpenMP;
    a value the user set stays."""
    import os
    import subprocess
    import sys

    def policy(**env) -> str:
        clean = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
        code = "import mocohd_cli.infra.threads as t, os; print(os.environ.get('OMP_WAIT_POLICY'), t.applied())"
        return subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True,
                              check=True).stdout.strip()

    assert policy() == "PASSIVE None"
    assert policy(OMP_WAIT_POLICY="ACTIVE") == "ACTIVE None"


def test_option_then_environment_then_omp_then_default(monkeypatch):
    monkeypatch.setattr(threads, "_load_average", lambda: 0.0)
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    assert threads.choose_threads(None)[:2] == (2, "default (2 cores, load 0.00)")
    monkeypatch.setattr(threads, "_omp_threads_at_start", "3")
    assert threads.choose_threads(None)[:2] == (3, "$OMP_NUM_THREADS")
    monkeypatch.setenv("MOCOHD_THREADS", "1")
    assert threads.choose_threads(None)[:2] == (1, "$MOCOHD_THREADS")
    assert threads.choose_threads(4)[:2] == (4, "--threads")
    monkeypatch.setenv("MOCOHD_THREADS", "two")
    with pytest.raises(MocohdError, match=r"\$MOCOHD_THREADS must be a whole number"):
        threads.choose_threads(None)


def test_the_option_is_applied_before_the_command_runs_and_recorded(tmp_path, monkeypatch):
    seen = {}
    import mocohd_cli.commands.data as data_command

    def make_dataset(*args, **kwargs):  # the command's body: what torch runs with by then
        seen["threads"] = torch.get_num_threads()
        return tmp_path

    monkeypatch.setattr(data_command, "make_dataset", make_dataset)
    result = runner.invoke(app, ["data", "make", "faces", "--out", str(tmp_path / "d"), "--threads", "2"])
    assert result.exit_code == 0, result.output
    assert seen["threads"] == 2
    record = provenance.collect()
    assert record["threads"] == 2 and record["threads_source"] == "--threads"
    assert "threads_interop_threads" in record


def test_a_bad_environment_value_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("MOCOHD_THREADS", "0")
    result = runner.invoke(app, ["data", "make", "faces", "--out", str(tmp_path / "d")])
    assert result.exit_code == 2
    assert "$MOCOHD_THREADS must be a whole number >= 1, got '0'" in result.output


def test_provenance_without_a_command_says_torch_chose():
    record = provenance.collect()
    assert record["threads"] == torch.get_num_threads() and "not set by mocohd" in record["threads_source"]
