"""`mocohd train` (in-domain) and `mocohd transfer` (cross-domain): one trainer, two objectives.

Both commands take every TrainConfig field of their mode as an option (mocohd_cli/commands/
options.py); transfer names the image generator and the videos after their domains.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

from rich.table import Table
import typer

from ..app import PANEL_TRAIN, app
from ..data.labels import resolve_classes
from ..infra.console import console
from ..infra.errors import MocohdError
from ..infra.files import sha256_of
from ..infra.runs import read_toml
from ..infra.threads import threads_option
from ..models.backbone import BACKBONE_HELP
from ..models.latent_prior import read_projections
from ..training import train
from ..training.config import GROUPS, TrainConfig
from ..training.presets import EXAMPLE_PRESETS, PRESETS, get_preset, preset_differences, preset_values
from ..training.resume import resolve_config
from ..workflows.builtin import default_train_values, default_transfer_values, is_example_backbone
from .options import config_command, extra_option, given_values, labels_option, options_from

# what each mode calls the image generator and the videos
_INPUT_FLAGS = {"in-domain": ("--checkpoint", "--data"), "cross-domain": ("--image-domain", "--motion-domain")}
_TRANSFER_NAMES = {
    "checkpoint": ("image_domain", "Image-generator checkpoint of domain A (the look). With --motion-domain; "
                                   "neither: the built-in cross-domain example."),
    "data": ("motion_domain", "Videos of domain B (the motion): a folder (or .zip) of frame folders or video files."),
    # transfer has no --checkpoint: say where the backbone is inferred from in its own words
    "backbone": ("backbone", f"{BACKBONE_HELP} (default: inferred from --image-domain)"),
}


def _shared_options() -> list:
    return [
        extra_option("config", Optional[Path], typer.Option(None, "--config", metavar="FILE",
                                                            help="TOML file of options (the "
                                                            "options given here override it).")),
        labels_option(),
        extra_option("list_presets", bool, typer.Option(False, "--list-presets", help="List the presets "
                                                        f"({', '.join(PRESETS)}) with their settings and exit.")),
        threads_option(),
    ]


def _mode_options(mode: str, rename: dict | None = None) -> list:
    """The mode's TrainConfig fields as options, grouped into the help panels in GROUPS' order."""
    options = options_from(TrainConfig, include=lambda field: mode in field.metadata.get("modes", ()), rename=rename)
    return sorted(options, key=lambda option: GROUPS.index(option.default.rich_help_panel))


def run_training(values: dict, *, mode: str) -> None:
    """What `train` and `transfer` share: resolve the settings, train, report."""
    if values.pop("list_presets"):
        _print_presets()
        return
    config_file, labels = values.pop("config"), values.pop("labels")
    values["classes"] = resolve_classes(values.pop("classes"), labels)
    options = given_values(values)
    options["mode"] = mode
    config = resolve_config(options, config_file=config_file)
    if not config.checkpoint and not config.data:
        config = resolve_config(options, config_file=config_file, defaults=_builtin_example(mode))
        if "latent_motion" not in options:
            config = _fit_example_projections(config)
    else:
        config = _with_example_preset(config, options, config_file, mode)
    _report_preset(config, options, config_file, mode)
    missing = [flag for flag, value in zip(_INPUT_FLAGS[mode], (config.checkpoint, config.data)) if not value]
    if missing:
        image_flag, video_flag = _INPUT_FLAGS[mode]
        raise MocohdError(f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} needed",
                          fix=f"pass {image_flag} PATH (the image generator) and {video_flag} DIR (videos to learn "
                              "motion from), or neither for the built-in example")
    result = train(config)
    losses = " ".join(f"{k}={v:.3f}" for k, v in result.losses.items())
    console.print(f"trained {result.steps} iterations; motion model: {result.motion_path}")
    if losses:
        console.print(f"final losses: {losses}")
    console.print(f"sample it with: mocohd sample --motion {result.motion_path}")


def _builtin_example(mode: str) -> dict:
    """Without an image generator and videos: the built-in example of the mode (mocohd_cli/workflows/
    builtin.py), with any options given on top of its short schedule."""
    if mode == "cross-domain":
        console.print("no --image-domain/--motion-domain: running the built-in cross-domain example (the 'robots' "
                      "example backbone animated with the motion of rendered cartoon-face videos)")
        return default_transfer_values()
    console.print("no --checkpoint/--data: training the built-in example (the 'faces' example backbone on rendered "
                  "cartoon-face videos; see `mocohd data list`)")
    return default_train_values()


def _with_example_preset(config, options: dict, config_file, mode: str):
    """A shipped example backbone with the user's videos and no --preset: the example's own schedule
    (preset example-train / example-transfer) rather than the release's defaults (built for 128 px and GPUs)."""
    if config.preset or config.resume or not is_example_backbone(config.checkpoint):
        return config
    return resolve_config({**options, "preset": EXAMPLE_PRESETS[mode]}, config_file=config_file)


def _report_preset(config, options: dict, config_file, mode: str) -> None:
    """Which preset the run uses, and which of the options given (command line, --config) differ from it."""
    if not config.preset:
        return
    preset = get_preset(config.preset)
    chosen = ("" if options.get("preset") or config.resume else
              " (chosen for the shipped example backbone; --preset NAME for another)")
    given = {**(read_toml(config_file) if config_file is not None else {}), **options}
    differ = preset_differences(preset, given)
    renamed = {field: flag for field, (flag, _) in _TRANSFER_NAMES.items()} if mode == "cross-domain" else {}
    flag = lambda name: "--" + renamed.get(name, name).replace("_", "-")  # noqa: E731
    console.print(f"preset {preset.name}{chosen}: {preset.source}")
    console.print("options that differ from it: " + (", ".join(f"{flag(k)} {v!r} (preset: {p!r})"
                                                               for k, (v, p) in differ.items()) or "none"))


def _fit_example_projections(config):
    """The example's shipped projections fit its schedule (time step 2, clips of up to 16 frames, the faces
    backbone): a run that changes those projects its own training videos instead (cached), and says so."""
    if not (config.w_latent_motion or config.w_walk or config.pca_source == "videos") or not config.latent_motion:
        return config
    try:
        read_projections(config.latent_motion, backbone_sha256=sha256_of(config.checkpoint),
                         time_step=config.time_step, frames=config.frames)
    except MocohdError:
        console.print("the example's shipped projections do not fit these settings (--time-step, --frames or "
                      "the backbone): projecting the training videos instead")
        return dataclasses.replace(config, latent_motion=None)
    return config


def _print_presets() -> None:
    table = Table("preset", "settings", "from")
    for preset in PRESETS.values():
        settings = ", ".join(f"{k}={v}" for k, v in preset_values(preset).items() if k != "preset")
        table.add_row(preset.name, f"{preset.description}\n{settings}", preset.source)
    console.print(table)


@config_command(app, "train", _mode_options("in-domain") + _shared_options(),
                help="Train a motion generator on videos, against a frozen image generator (in-domain).\n\n"
                     "With no arguments it trains the built-in example (the faces backbone on 64 rendered face "
                     "videos, about 5 minutes on 2 cores) into mocohd-runs/.\n\n"
                     "Examples:\n\n"
                     "  mocohd train\n\n"
                     "  mocohd train --checkpoint stylegan2-ffhq-256.pt --data videos/ --latent-iterations 3000\n\n"
                     "  mocohd train --resume --out mocohd-runs/train-20260101-120000",
                panel=PANEL_TRAIN)
def train_command(values: dict) -> None:
    run_training(values, mode="in-domain")


@config_command(app, "transfer", _mode_options("cross-domain", _TRANSFER_NAMES) + _shared_options(),
                help="Cross-domain training: animate an image generator of one domain with the motion of videos of "
                     "another.\n\n"
                     "With no arguments it trains the built-in example (the robots backbone with the motion of the "
                     "rendered face videos) into mocohd-runs/.\n\n"
                     "Examples:\n\n"
                     "  mocohd transfer\n\n"
                     "  mocohd transfer --image-domain robots.pt --motion-domain face-videos/ --iterations 2000",
                panel=PANEL_TRAIN)
def transfer_command(values: dict) -> None:
    values["checkpoint"], values["data"] = values.pop("image_domain"), values.pop("motion_domain")
    run_training(values, mode="cross-domain")
