"""`mocohd sample`, `mocohd eval` and `mocohd eval stats` under torchrun (issue 37): the batches are
dealt over the ranks, and 1 or 2 processes give the same files byte for byte and the same numbers;
a rank that fails ends the job at once with one error naming it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mocohd_cli.cli import app
from mocohd_cli.evaluation.sources import DatasetVideos, GeneratedVideos
from mocohd_cli.infra.distributed import dealt_order
from mocohd_cli.workflows.sampling import untrained_motion
from test_eval import detector_args, detector_files, moving_videos  # noqa: F401 (a fixture)

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


def torchrun(args: list[str], tmp_path: Path, *, module: str | None = "mocohd_cli", timeout: float = 120,
             script: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MOCOHD_THREADS": "1", "CI": "1",
           "MOCOHD_CACHE": os.environ["MOCOHD_CACHE"]}
    target = ["-m", module] if script is None else [str(script)]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "--monitor-interval", "0.1", *target, *args]
    return subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=timeout)


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_dealt_batches_put_together_are_the_whole(tiny_stylegan2, tmp_path):
    """Every source's shares, put back in the dealt order, are exactly what one process reads."""
    real = DatasetVideos(moving_videos(tmp_path / "real", 5, 7, seed=0), size=16, max_videos=5, seed=3)
    whole = list(real.frames(4))
    for world in (2, 3):
        parts = dealt_order([list(real.frames(4, (rank, world))) for rank in range(world)])
        assert len(parts) == len(whole) and all(torch.equal(a, b) for a, b in zip(parts, whole))
        parts = dealt_order([list(real.clips(4, 2, (rank, world))) for rank in range(world)])
        assert all(torch.equal(a, b) for a, b in zip(parts, real.clips(4, 2)))
    motion = untrained_motion(tiny_stylegan2, torch.device("cpu"), pca_samples=512)
    fake = GeneratedVideos(tiny_stylegan2, motion, num_videos=35, seed=1)  # three seed chunks
    parts = dealt_order([list(fake.clips(3, 8, (rank, 2))) for rank in range(2)])
    assert [len(p) for p in parts] == [16, 16, 3]
    assert all(torch.equal(a, b) for a, b in zip(parts, fake.clips(3, 8)))


def test_two_ranks_write_the_same_files_as_one(tiny_stylegan2_checkpoint, tmp_path):
    args = ["sample", "--backbone", "stylegan2", "--checkpoint", str(tiny_stylegan2_checkpoint), "-n", "7",
            "--frames", "4", "--batch-size", "2", "--seed", "5", "--device", "cpu"]
    alone = runner.invoke(app, [*args, "--out", str(tmp_path / "one"), "--save-latents", str(tmp_path / "one.npz")])
    assert alone.exit_code == 0, alone.output
    done = torchrun([*args, "--out", str(tmp_path / "two"), "--save-latents", str(tmp_path / "two.npz")], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    one, two = tree_bytes(tmp_path / "one"), tree_bytes(tmp_path / "two")
    assert len(one) == 7 and one == two
    assert (tmp_path / "one.npz").read_bytes() == (tmp_path / "two.npz").read_bytes()
    assert (done.stdout + done.stderr).count("wrote 7 file(s)") == 1  # rank 0 reports, once
    grid = [*args, "--grid", "--format", "gif"]
    alone = runner.invoke(app, [*grid, "--out", str(tmp_path / "grid1")])
    done = torchrun([*grid, "--out", str(tmp_path / "grid2")], tmp_path)
    assert alone.exit_code == 0 and done.returncode == 0, done.stderr[-3000:]
    assert tree_bytes(tmp_path / "grid1") == tree_bytes(tmp_path / "grid2") != {}


def test_two_ranks_give_the_same_eval_numbers_and_stats(detector_files, tmp_path):  # noqa: F811
    real = moving_videos(tmp_path / "real", 13, 18, seed=0)
    fake = moving_videos(tmp_path / "fake", 13, 18, seed=1)
    metrics = [arg for m in ("fvd16", "kvd", "fid", "kid", "isv", "acd") for arg in ("--metric", m)]
    args = ["eval", "--real", str(real), "--fake", str(fake), *metrics, *detector_args(detector_files),
            "--embedder", str(detector_files["embedder"]), "--num-videos", "13", "--batch-size", "3", "--no-cache"]
    alone = runner.invoke(app, [*args, "--json", str(tmp_path / "one.json")])
    assert alone.exit_code == 0, alone.output
    done = torchrun([*args, "--json", str(tmp_path / "two.json")], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    one, two = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("one", "two"))
    for name in ("fvd16", "kvd", "fid", "kid", "isv", "acd"):
        assert abs(one[name] - two[name]) <= 1e-6 * max(1.0, abs(one[name])), name
    assert one["details"]["acd"] == two["details"]["acd"]
    assert one["protocol"]["fake_counts"] == two["protocol"]["fake_counts"]

    stats = ["eval", "stats", str(real), "--metric", "fvd16", "--metric", "fid", "--resolution", "16",
             "--num-videos", "13", "--batch-size", "3", *detector_args(detector_files)]
    alone = runner.invoke(app, [*stats, "--out", str(tmp_path / "one.npz")])
    done = torchrun([*stats, "--out", str(tmp_path / "two.npz")], tmp_path)
    assert alone.exit_code == 0 and done.returncode == 0, done.stderr[-3000:]
    with np.load(tmp_path / "one.npz") as a, np.load(tmp_path / "two.npz") as b:
        assert a.files == b.files and all(np.array_equal(a[k], b[k]) for k in a.files)


def test_two_ranks_give_the_same_ground_truth_numbers(tmp_path):
    """The procedural domains' metrics deal the generated videos over the ranks and read them there."""
    from mocohd_cli.data.domains import make_dataset

    real = make_dataset("faces", tmp_path / "real", videos=2, frames=16, size=64, seed=3)
    fake = make_dataset("faces", tmp_path / "fake", videos=7, frames=16, size=64, seed=5)
    args = ["eval", "--real", str(real), "--fake", str(fake), "--metric", "motion", "--metric", "content",
            "--num-videos", "7", "--batch-size", "2"]
    alone = runner.invoke(app, [*args, "--json", str(tmp_path / "one.json")])
    assert alone.exit_code == 0, alone.output
    worker = tmp_path / "worker.py"
    worker.write_text(COUNTING_WORKER)
    done = torchrun([*args, "--json", str(tmp_path / "two.json")], tmp_path, script=worker)
    assert done.returncode == 0, done.stderr[-3000:]
    # the 7 generated videos in batches of 2 dealt over 2 ranks; rank 0 also reads the 7 real ones
    read = {rank: (tmp_path / f"read-{rank}.txt").read_text().split() for rank in (0, 1)}
    assert sorted(read[0]) == ["2", "2", "7"] and sorted(read[1]) == ["1", "2"]  # batches 0, 2 and 1, 3
    one, two = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("one", "two"))
    assert one["protocol"]["ground_truth"]["fake_videos"] == two["protocol"]["ground_truth"]["fake_videos"] == 7
    for name in ("motion", "content"):
        assert abs(one[name] - two[name]) <= 1e-6 * max(1.0, abs(one[name])), name
        assert one["details"][name].keys() == two["details"][name].keys()


COUNTING_WORKER = """
import os, sys
from mocohd_cli.evaluation import groundtruth, run

read = run.read_videos

def counting_read(reader, videos, **kwargs):
    if not isinstance(videos, groundtruth.Readings):  # read already
        with open(f"read-{os.environ['RANK']}.txt", "a") as log:
            log.write(f"{len(videos)} ")
    return read(reader, videos, **kwargs)

run.read_videos = counting_read
from mocohd_cli.cli import main
sys.argv = ["mocohd", *sys.argv[1:]]
main()
"""


FAILING_WORKER = """
import os, sys
from mocohd_cli.workflows import sampling

render = sampling.render

def failing_render(*args, **kwargs):
    if os.environ["RANK"] == "1":
        raise RuntimeError("injected failure")
    return render(*args, **kwargs)

sampling.render = failing_render
from mocohd_cli.cli import main
sys.argv = ["mocohd", *sys.argv[1:]]
main()
"""


def test_a_failing_rank_ends_the_job_with_one_error_naming_it(tiny_stylegan2_checkpoint, tmp_path):
    worker = tmp_path / "worker.py"
    worker.write_text(FAILING_WORKER)
    args = ["sample", "--backbone", "stylegan2", "--checkpoint", str(tiny_stylegan2_checkpoint), "-n", "40",
            "--frames", "4", "--batch-size", "1", "--device", "cpu", "--out", str(tmp_path / "out")]
    done = torchrun(args, tmp_path, script=worker, timeout=60)
    assert done.returncode != 0
    assert "error: rank 1 of 2 failed: RuntimeError: injected failure" in done.stderr, done.stderr[-3000:]
    ours = done.stderr.split("torch/distributed/elastic")[0]  # before torchrun's own report
    assert "Traceback" not in ours and ours.count("error:") == 1 and "UNTRAINED" in ours
    assert ours.count("UNTRAINED") == 1  # the other ranks print nothing of their own
