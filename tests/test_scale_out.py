"""benchmarks/scale_out.py's reading row runs on tiny inputs (the whole benchmark: docs/scaling.md)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

from mocohd_cli.data.shards import write_shards
from test_eval import moving_videos

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "scale_out.py"


def test_clips_per_second_from_a_folder_and_from_shards(tmp_path):
    spec = importlib.util.spec_from_file_location("scale_out", BENCHMARK)
    scale_out = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(scale_out)
    folder = moving_videos(tmp_path / "videos", 4, 17, seed=0)
    shards, count = write_shards(folder, tmp_path / "shards", per_shard=2)
    assert count == 4 and len(shards) == 2
    assert scale_out.clips_per_second(folder, 8) > 0
    assert scale_out.clips_per_second(str(tmp_path / "shards" / "shard-{000000..000001}.tar"), 8) > 0
