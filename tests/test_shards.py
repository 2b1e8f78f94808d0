"""Tar-shard datasets (issue 37 item 2): `mocohd data shard` writes webdataset shards from a folder,
the shards read back (brace notation, `pipe:`) with the same clips and eval numbers as the folder,
split over ranks and workers deterministically and resumably, and bad input is one clear error."""
from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from mocohd_cli.cli import app
from mocohd_cli.data.shards import ShardClips, expand_shards, is_shard_spec, shard_samples, write_shards
from mocohd_cli.evaluation.sources import DatasetVideos, real_videos
from mocohd_cli.infra.distributed import dealt_order
from mocohd_cli.infra.errors import MocohdError
from test_eval import detector_args, detector_files, moving_videos  # noqa: F401 (a fixture)

runner = CliRunner()


@pytest.fixture
def sharded(tmp_path) -> tuple[Path, str]:
    folder = moving_videos(tmp_path / "videos", 7, 17, seed=0)
    result = runner.invoke(app, ["data", "shard", str(folder), str(tmp_path / "shards"), "--per-shard", "2"])
    assert result.exit_code == 0, result.output
    assert "wrote 7 videos to 4 shards" in result.output
    return folder, str(tmp_path / "shards" / "shard-{000000..000003}.tar")


def test_shards_are_written_the_same_and_read_back(sharded, tmp_path):
    folder, spec = sharded
    assert is_shard_spec(spec) and not is_shard_spec(folder) and is_shard_spec("pipe:cat a.tar")
    (tmp_path / "odd.tar").mkdir()
    assert not is_shard_spec(tmp_path / "odd.tar")  # a folder, whatever its name
    with pytest.raises(MocohdError, match="pass the videos as a folder"):
        ShardClips(spec, n_frames=3, time_step=1, size=8).entries
    assert len(expand_shards(spec)) == 4
    again, count = write_shards(folder, tmp_path / "again", per_shard=2)
    assert count == 7 and [p.read_bytes() for p in again] == [
        p.read_bytes() for p in sorted((tmp_path / "shards").glob("*.tar"))]  # same input, same bytes
    videos = list(shard_samples(expand_shards(spec)))
    assert [v.key for v in videos] == [f"video_{i:03d}" for i in range(7)]
    piped = list(shard_samples([f"pipe:cat {u}" for u in expand_shards(spec)]))
    assert [v.key for v in piped] == [v.key for v in videos]
    # resharding shards: 7 videos by size
    shards, count = write_shards(spec, tmp_path / "one", max_bytes=1e9)
    assert count == 7 and len(shards) == 1


def test_eval_sources_match_the_folder_and_split_over_ranks(sharded):
    folder, spec = sharded
    from_folder = DatasetVideos(folder, size=16, max_videos=6, seed=3)
    from_shards = real_videos(spec, size=16, max_videos=6, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(from_folder.clips(4, 4), from_shards.clips(4, 4)))
    assert all(torch.equal(a, b) for a, b in zip(from_folder.frames(5), from_shards.frames(5)))
    whole = list(from_shards.frames(5))
    parts = dealt_order([list(from_shards.frames(5, (rank, 2))) for rank in range(2)])
    assert len(parts) == len(whole) and all(torch.equal(a, b) for a, b in zip(parts, whole))
    parts = dealt_order([list(from_shards.clips(4, 2, (rank, 3))) for rank in range(3)])
    assert all(torch.equal(a, b) for a, b in zip(parts, from_shards.clips(4, 2)))


def take(dataset, n):
    out = []
    for batch in dataset:
        out.append(batch)
        if len(out) == n:
            return out


def test_training_stream_is_split_deterministic_and_resumable(sharded):
    _, spec = sharded
    settings = dict(n_frames=3, time_step=2, size=8, seed=1, batch_size=2)
    ranks = [take(ShardClips(spec, rank=r, world_size=2, **settings), 5) for r in range(2)]
    assert all(b.shape == (2, 3, 3, 8, 8) for b in ranks[0])
    again = take(ShardClips(spec, rank=0, world_size=2, **settings), 5)
    assert all(torch.equal(a, b) for a, b in zip(again, ranks[0]))  # same seed, same stream
    assert not torch.equal(ranks[0][0], ranks[1][0])  # the ranks read other shards
    resumed = take(ShardClips(spec, rank=0, world_size=2, start_batch=3, **settings), 2)
    assert all(torch.equal(a, b) for a, b in zip(resumed, ranks[0][3:]))
    # in two loader workers: the same batches whatever batch the stream is resumed at
    with_workers = take(ShardClips(spec, **{**settings, "batch_size": 1}).stream(2, workers=2), 6)
    for start in (1, 3):
        resumed = take(ShardClips(spec, **settings).stream(2, start_batch=start, workers=2), 6 - start)
        assert all(torch.equal(a, b) for a, b in zip(resumed, with_workers[start:]))
    # fewer shards than consumers: the samples are dealt instead
    many = take(ShardClips(spec, rank=4, world_size=5, **settings), 2)
    assert many[0].shape == (2, 3, 3, 8, 8)


def test_bad_shards_are_one_clear_error_or_a_counted_skip(sharded, tmp_path, detector_files):  # noqa: F811
    _, spec = sharded
    with pytest.raises(MocohdError, match="matches no shard"):
        expand_shards(str(tmp_path / "shards" / "nothing-{000000..000003}.tar"))
    with pytest.raises(MocohdError, match="1 of the 5 shards do not exist"):
        expand_shards(str(tmp_path / "shards" / "shard-{000000..000004}.tar"))
    broken = tmp_path / "broken"
    shutil.copytree(tmp_path / "shards", broken)
    (broken / "shard-000001.tar").write_bytes(b"this is not a tar file" * 50)
    result = runner.invoke(app, ["eval", "stats", str(broken / "shard-{000000..000003}.tar"), "--metric", "fvd16",
                                 "--resolution", "16", "--out", str(tmp_path / "s.npz"), *detector_args(detector_files)])
    assert result.exit_code == 2 and "shard-000001.tar" in result.output, result.output
    # a corrupt member inside a good tar: skipped with a warning naming shard and member, and counted
    bad = tmp_path / "bad"
    bad.mkdir()
    with tarfile.open(bad / "shard-000000.tar", "w") as tar:
        for path in sorted((tmp_path / "shards").glob("*.tar"))[:1]:
            with tarfile.open(path) as src:
                for member in src.getmembers():
                    tar.addfile(member, src.extractfile(member))
        junk = tmp_path / "junk.png"
        junk.write_bytes(b"not a png")
        for i in range(3):
            tar.add(junk, arcname=f"junk.00000{i}.png")
    clips = ShardClips(str(bad / "shard-000000.tar"), n_frames=3, time_step=1, size=8, seed=0)
    assert len(take(clips, 3)) == 3
    assert clips.report.corrupt and clips.report.corrupt[0][1] == "junk.000000.png"


def test_eval_reads_shards_with_the_folder_numbers(sharded, tmp_path, detector_files):  # noqa: F811
    folder, spec = sharded
    fake = moving_videos(tmp_path / "fake", 7, 17, seed=1)
    args = ["eval", "--fake", str(fake), "--metric", "fvd16", "--metric", "fid", *detector_args(detector_files),
            "--num-videos", "7", "--batch-size", "3", "--no-cache"]
    numbers = []
    for real in (str(folder), spec):
        result = runner.invoke(app, [*args, "--real", real, "--json", str(tmp_path / "e.json")])
        assert result.exit_code == 0, result.output
        numbers.append(json.loads((tmp_path / "e.json").read_text()))
    for name in ("fvd16", "fid"):
        assert abs(numbers[0][name] - numbers[1][name]) <= 1e-6 * max(1.0, abs(numbers[0][name]))


def test_training_reads_shards(tiny_stylegan2_checkpoint, sharded, tmp_path):
    from mocohd_cli.infra.files import read_safetensors
    from mocohd_cli.training import TrainConfig, train
    from test_train import TINY

    _, spec = sharded
    motions = []
    for run in ("a", "b"):
        config = TrainConfig(backbone="stylegan2", checkpoint=str(tiny_stylegan2_checkpoint), data=spec,
                             out=str(tmp_path / run), **{**TINY, "iterations": 2, "num_samples": 0, "seed": 3})
        result = train(config, progress=False)
        assert result.steps == 2
        motions.append(read_safetensors(result.motion_path)[0])
    assert all(torch.equal(motions[0][k], motions[1][k]) for k in motions[0])  # same seed, same clips


def test_training_from_shards_resumes_exactly(tiny_stylegan2_checkpoint, sharded, tmp_path):
    from mocohd_cli.infra.files import read_safetensors
    from mocohd_cli.training import TrainConfig, train
    from test_train import TINY

    _, spec = sharded
    settings = {**TINY, "num_samples": 0, "seed": 3, "checkpoint_every": 1, "sample_every": 100}

    def run(out, **overrides):
        return train(TrainConfig(backbone="stylegan2", checkpoint=str(tiny_stylegan2_checkpoint), data=spec,
                                 out=str(out), **{**settings, **overrides}), progress=False)

    full = run(tmp_path / "full", iterations=4)
    run(tmp_path / "cut", iterations=2)
    resumed = run(tmp_path / "cut", iterations=4, resume=True)
    assert resumed.steps == full.steps == 4
    a, b = read_safetensors(full.motion_path)[0], read_safetensors(resumed.motion_path)[0]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_latent_phase_and_identity_encoder_read_the_first_videos_of_shards(tiny_stylegan2_checkpoint, sharded,
                                                                          tmp_path, monkeypatch):
    """What needs videos listed up front streams the first videos of the shards: the same videos and clips as
    the folder they were written from, and the projections and identity encoder train from them."""
    from mocohd_cli.data.leading import LeadingVideos
    from mocohd_cli.models.backbone import load_backbone
    from mocohd_cli.training.identity import identity_encoder_for
    from mocohd_cli.training.projections import project_training_videos

    folder, spec = sharded
    shards, local = LeadingVideos(spec, 5, 4, 2, 8, seed=1), LeadingVideos(folder, 5, 4, 2, 8, seed=1)
    assert shards.listed == local.listed == [(f"video_{i:03d}", 17) for i in range(5)]
    assert torch.equal(shards.load(2), local.load(2)) and shards.load(2).shape == (5, 8, 3, 8, 8)
    assert len(LeadingVideos(spec, 100, 9, 2, 8)) == 7  # 17 frames hold 9 every 2nd: every video
    with pytest.raises(MocohdError, match="no video of the shards holds 9 frames every 3"):
        LeadingVideos(spec, 5, 9, 3, 8)
    monkeypatch.setenv("MOCOHD_CACHE", str(tmp_path / "cache"))
    backbone = load_backbone("stylegan2", tiny_stylegan2_checkpoint)
    fast = {"first_steps": 2, "steps": 2, "candidates": 2}
    latents = project_training_videos(backbone, spec, frames=4, time_step=2, size=backbone.resolution, count=3,
                                      **fast)
    assert latents.shape == (3, 9, backbone.latent_dim) and torch.isfinite(latents).all()
    _, distance = identity_encoder_for(spec, frames=4, time_step=2, steps=2)
    assert distance > 0


def test_data_inspect_reads_shards_as_it_reads_the_folder(sharded):
    folder, spec = sharded
    shards = runner.invoke(app, ["data", "inspect", spec, "--frames", "8", "--time-step", "2"], env={"COLUMNS": "200"})
    assert shards.exit_code == 0, shards.output
    text = " ".join(shards.output.split())
    assert "7 videos in 4 shards" in text and "119 frames (per video: min 17, median 17, max 17)" in text
    assert "0 too short for 8 frames every 2 (15 frames)" in text
    plain = runner.invoke(app, ["data", "inspect", str(folder), "--frames", "8", "--time-step", "2", "--no-cache"],
                          env={"COLUMNS": "200"})
    assert "119 frames (per video: min 17, median 17, max 17)" in " ".join(plain.output.split())  # rich wraps it
    missing = runner.invoke(app, ["data", "inspect", spec.replace("000003", "000009")])
    assert missing.exit_code == 2 and "do not exist" in missing.output
