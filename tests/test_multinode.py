"""Two "nodes" on 127.0.0.1 (issue 37 item 3): two torchrun agents meet at a c10d rendezvous
(`--nnodes 2 --rdzv-backend c10d --rdzv-endpoint HOST:PORT`, gloo) and `mocohd sample` and
`mocohd eval` split over them write the same files and numbers as one process."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from mocohd_cli.cli import app
from test_eval import detector_args, detector_files, moving_videos  # noqa: F401 (a fixture)
from test_sample_ranks import tree_bytes

runner = CliRunner()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def two_nodes(args: list[str], cwd: Path, timeout: float = 120) -> list[subprocess.CompletedProcess]:
    """`torchrun --nnodes 2 --nproc_per_node 1 --rdzv-backend c10d ... -m mocohd_cli ARGS` as two agents."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MOCOHD_THREADS": "1", "CI": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1",
               "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{free_port()}", "--rdzv-id", "mocohd-test",
               "--monitor-interval", "0.1", "-m", "mocohd_cli", *args]
    nodes = [subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    done = []
    for node in nodes:
        try:
            out, err = node.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for other in nodes:
                other.kill()
            raise
        done.append(subprocess.CompletedProcess(command, node.returncode, out, err))
    return done


def test_sample_and_eval_over_two_nodes(tiny_stylegan2_checkpoint, detector_files, tmp_path):  # noqa: F811
    args = ["sample", "--backbone", "stylegan2", "--checkpoint", str(tiny_stylegan2_checkpoint), "-n", "5",
            "--frames", "4", "--batch-size", "2", "--seed", "5", "--device", "cpu"]
    alone = runner.invoke(app, [*args, "--out", str(tmp_path / "one")])
    assert alone.exit_code == 0, alone.output
    nodes = two_nodes([*args, "--out", str(tmp_path / "two")], tmp_path)
    assert all(n.returncode == 0 for n in nodes), [n.stderr[-2000:] for n in nodes]
    assert tree_bytes(tmp_path / "one") == tree_bytes(tmp_path / "two") and len(tree_bytes(tmp_path / "one")) == 5

    real = moving_videos(tmp_path / "real", 6, 17, seed=0)
    fake = moving_videos(tmp_path / "fake", 6, 17, seed=1)
    evaluate = ["eval", "--real", str(real), "--fake", str(fake), "--metric", "fvd16", "--metric", "fid",
                *detector_args(detector_files), "--num-videos", "6", "--batch-size", "2", "--no-cache"]
    alone = runner.invoke(app, [*evaluate, "--json", str(tmp_path / "one.json")])
    assert alone.exit_code == 0, alone.output
    nodes = two_nodes([*evaluate, "--json", str(tmp_path / "two.json")], tmp_path)
    assert all(n.returncode == 0 for n in nodes), [n.stderr[-2000:] for n in nodes]
    one, two = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("one", "two"))
    for name in ("fvd16", "fid"):
        assert abs(one[name] - two[name]) <= 1e-6 * max(1.0, abs(one[name])), name


def test_train_over_two_nodes_from_shards(tiny_stylegan2_checkpoint, tmp_path):
    from test_train import TINY, cli_args

    folder = moving_videos(tmp_path / "videos", 6, 9, seed=0)
    shards = runner.invoke(app, ["data", "shard", str(folder), str(tmp_path / "shards"), "--per-shard", "3"])
    assert shards.exit_code == 0, shards.output
    out = tmp_path / "run"
    nodes = two_nodes(["train", "--checkpoint", str(tiny_stylegan2_checkpoint), "--data",
                       str(tmp_path / "shards" / "shard-{000000..000001}.tar"), "--out", str(out),
                       "--latent-iterations", "0",
                       *cli_args({**TINY, "iterations": 2, "num_samples": 0})], tmp_path, timeout=200)
    assert all(n.returncode == 0 for n in nodes), [n.stderr[-2000:] for n in nodes]
    log = (out / "log.txt").read_text()
    assert "world size 2" in log and (out / "motion.safetensors").is_file()
