"""`mocohd eval`: how good generated videos are (FVD, FID, KID/KVD, ISV, ACD, ground-truth metrics);
`mocohd eval stats`: real-data statistics saved for reuse."""
from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Optional

from rich.table import Table
import typer

from ..app import PANEL_EVALUATE, app
from ..evaluation.detectors import load_detector, parse_detector_options
from ..evaluation.metrics import EXTRA_VALUES, METRICS, cached_real_stats, get_metric
from ..evaluation.run import EvalSettings, run_evaluation
from ..evaluation.sources import real_videos
from ..evaluation.statistics import save_stats
from ..infra.console import console
from ..infra.device import DEVICES
from ..infra.distributed import init_distributed, rank_failures, shutdown
from ..infra.errors import MocohdError
from ..infra.files import atomic_path
from ..infra.threads import threads_option, threads_typer_option
from .options import choice_type, extra_option, given_values, options_from

eval_app = typer.Typer(help="Measure generated videos against real ones (see docs/evaluation.md).\n\n"
                            "Examples:\n\n  mocohd eval --real videos/ --fake samples/ --metric fvd16\n\n"
                            "  mocohd eval --real videos/ --motion example:faces --metric fvd16 --metric fid")
app.add_typer(eval_app, name="eval", rich_help_panel=PANEL_EVALUATE)

Device = choice_type("device", DEVICES)

_JSON = extra_option("json_path", Optional[Path], typer.Option(None, "--json", metavar="FILE", help="Write {metric: value, ...} "
                                                                "with the details and the protocol to this file."))


def _settings(values: dict) -> EvalSettings:
    return EvalSettings(**given_values(values))


def eval_command(ctx: typer.Context, **values) -> None:
    """Measure generated videos against real ones: `mocohd eval --real DATA --fake DIR --metric fvd16`."""
    if ctx.invoked_subcommand is not None:
        return
    json_path = values.pop("json_path")
    values.pop("threads", None)  # applied while the command line was parsed (mocohd_cli/infra/threads.py)
    settings = _settings(values)
    settings.validate()
    # under torchrun the videos and real clips are dealt over the ranks; rank 0 reports and writes
    context = init_distributed(settings.device)
    console.quiet = console.quiet or not context.is_main  # rank 0 speaks for the job; errors still show
    try:
        with rank_failures(context):
            result = run_evaluation(settings, context=context)
    finally:
        shutdown(context)
    if not context.is_main:
        return
    # a metric with a real reference (ACD of the real videos) shows it beside its value
    references = {name: details["real"] for name, details in result.details.items()
                  if isinstance(details.get("real"), (int, float))}
    table = Table("metric", "value", *(["real videos"] if references else []), "what it is")
    for name, value in result.values.items():
        reference = [f"{references[name]:.4g}" if name in references else ""] if references else []
        table.add_row(name, f"{value:.4g}", *reference,
                      METRICS[name].description if name in METRICS else EXTRA_VALUES[name])
    console.print(table)
    if json_path is not None:
        with atomic_path(json_path) as tmp:
            tmp.write_text(json.dumps(result.to_json(), indent=1) + "\n", encoding="utf-8")
        console.print(f"wrote {json_path}")


eval_command.__signature__ = inspect.Signature(
    [inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)]
    + options_from(EvalSettings) + [_JSON, threads_option()])
eval_app.callback(invoke_without_command=True)(eval_command)


@eval_app.command("stats")
def stats_command(
    data: Path = typer.Argument(..., metavar="DATA", help="Real videos (anything `mocohd train --data` reads)."),
    out: Path = typer.Option(..., metavar="FILE", help="Statistics file to write (.npz)."),
    metric: list[str] = typer.Option(["fvd16"], "--metric", metavar="METRIC", help="Metrics the statistics are for; repeat."),
    resolution: int = typer.Option(..., help="Side the videos are evaluated at (the generated videos')."),
    num_videos: int = typer.Option(2048, help="At most this many videos (the first that are long enough)."),
    seed: int = typer.Option(0, help="Seed of the clips' random offsets."),
    batch_size: int = typer.Option(16, help="Clips per detector call."),
    device: Device = typer.Option(Device.auto, help="Where the detector runs."),
    detector: Optional[list[str]] = typer.Option(None, metavar="NAME=PATH", help="Detector file NAME=PATH (repeat)."),
    threads: Optional[int] = threads_typer_option(),
) -> None:
    """Compute real-data statistics once; pass the file to `mocohd eval --real`."""
    if not out.suffix == ".npz":
        raise MocohdError("statistics files end in .npz", path=out, fix="pass --out FILE.npz")
    kinds = []
    for name in dict.fromkeys(metric):
        kind = get_metric(name).kind
        if kind is None or not get_metric(name).needs_real:
            raise MocohdError(f"{name} keeps no real-data statistics", fix="use fvd16, fvd128, kvd, fid or kid")
        kinds += [kind] if kind not in kinds else []
    overrides, entries = parse_detector_options(detector), {}
    # under torchrun the clips are dealt over the ranks; rank 0 gathers the features and writes the file
    context = init_distributed(Device(device).value)
    console.quiet = console.quiet or not context.is_main
    try:
        with rank_failures(context):
            for kind in kinds:
                network = load_detector(kind.detector, context.device, overrides)
                real = real_videos(data, size=resolution, max_videos=num_videos, seed=seed)
                entries[kind.key] = cached_real_stats(kind, real, network, network.sha256, resolution=resolution,
                                                      batch_size=batch_size, use_cache=False, context=context)
    finally:
        shutdown(context)
    if not context.is_main:
        return
    save_stats(out, entries)
    console.print(f"wrote {out} ({', '.join(f'{k}: {s.count} vectors' for k, (s, _) in entries.items())})")
