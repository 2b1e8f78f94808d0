"""`mocohd train-encoder`: a timm encoder that predicts a backbone's latents from its images, the
starting guess of `mocohd animate` and `mocohd eval --metric prediction` (docs/animate.md)."""
from __future__ import annotations

from ..app import PANEL_TRAIN, app
from ..infra.console import console
from ..infra.threads import threads_option
from ..workflows.encoder import EncoderSettings, train_encoder
from .options import config_command, given_values, options_from


@config_command(app, "train-encoder", options_from(EncoderSettings) + [threads_option()],
                help="Train an encoder (image -> latent) on a backbone's own samples.\n\n"
                     "Example:\n\n"
                     "  mocohd train-encoder --checkpoint example:faces --out faces-encoder.safetensors",
                panel=PANEL_TRAIN)
def train_encoder_command(values: dict) -> None:
    settings = EncoderSettings(**given_values(values))
    settings.validate()

    def log(entry: dict) -> None:
        losses = ", ".join(f"{name} {value:.4f}" for name, value in entry.items() if name != "step")
        console.print(f"step {entry['step']}: {losses}")

    result = train_encoder(settings, log=log)
    console.print(f"wrote {result.path}")
