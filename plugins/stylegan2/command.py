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


def register(app: typer.Typer) -> None:
    """Add `pretrain` to the mocohd command line."""
    from mocohd_cli.app import PANEL_TRAIN
    from mocohd_cli.commands.options import config_command, extra_option, given_values, options_from

    from .pretrain import PretrainConfig

    parameters = options_from(PretrainConfig) + [
        extra_option("config", Optional[Path], typer.Option(None, "--config", help="TOML file of options (the "
                                                            "options given here override it).")),
    ]

    @config_command(app, "pretrain", parameters,
                    help="Pre-train a StyleGAN2 image generator on the frames of a dataset (non-saturating loss, "
                         "lazy R1, EMA, DiffAugment).", panel=PANEL_TRAIN)
    def pretrain_command(values: dict) -> None:
        from mocohd_cli.infra.console import console

        from .pretrain import pretrain, resolve_pretrain_config

        config_file = values.pop("config")
        options = given_values(values)
        export = pretrain(resolve_pretrain_config(options, config_file=config_file))
        console.print(f"image generator written to {export} (use it with --checkpoint)")
