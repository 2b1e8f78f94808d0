"""`mocohd pretrain`: the StyleGAN2 plugin's command, registered through the "mocohd.commands"
entry-point group (mocohd_cli/cli.py calls `register(app)`).

Its options are PretrainConfig's fields (mocohd_cli/commands/options.py builds them), plus
--config FILE.toml; settings are layered as `mocohd train` layers them (see
mocohd_plugins.stylegan2.pretrain.resolve_pretrain_config).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from mocohd_cli.plugin_api import (PANEL_TRAIN, config_command, console, extra_option, given_values, options_from,
                                   threads_option)

from .pretrain import PretrainConfig, pretrain, resolve_pretrain_config

# What a usable backbone costs (docs/pretrain_cost.md says which numbers are measured and which estimated).
COST_HELP = ("What a usable backbone costs, 64 px at batch 16 (docs/pretrain_cost.md): the domain's shapes after "
             "about 30k-85k images (2-5k steps: 18 minutes alone on 2 CPU cores to 65 minutes on a shared one), "
             "clean samples after about 450k (28k steps: 1.7 h alone on 2 CPU cores to 4.5 h on a shared one), "
             "from a few thousand varied frames or more; CPU times measured. On a GPU an estimated 10-30 minutes "
             "for the 28k steps (not measured). A few minutes give coloured blobs. Watch the frames FID that "
             "log.txt records at each sample step (with an Inception detector at hand) and the sample grids: "
             "stop when both stop improving.")


def register(app: typer.Typer) -> None:
    """Add `pretrain` to the mocohd command line."""
    parameters = options_from(PretrainConfig) + [
        extra_option("config", Optional[Path], typer.Option(None, "--config", metavar="FILE",
                                                            help="TOML file of options (the "
                                                            "options given here override it).")),
        threads_option(),
    ]

    @config_command(app, "pretrain", parameters,
                    help="Pre-train a StyleGAN2 image generator on the frames of a dataset (non-saturating loss, "
                         "lazy R1, EMA, DiffAugment).\n\n" + COST_HELP, panel=PANEL_TRAIN)
    def pretrain_command(values: dict) -> None:
        config_file = values.pop("config")
        options = given_values(values)
        export = pretrain(resolve_pretrain_config(options, config_file=config_file))
        console.print(f"image generator written to {export} (use it with --checkpoint)")
