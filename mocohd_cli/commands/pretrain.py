"""`mocohd pretrain`: train a StyleGAN2 image generator on the frames of a dataset;
`mocohd backbone-grid`: a PNG grid of samples of an image generator."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..app import app
from ..infra.console import console


def _parse_channels(text: Optional[str]) -> dict[int, int]:
    """"4:128,8:96,..." -> {4: 128, 8: 96, ...}."""
    from ..infra.errors import MocohdError

    if not text:
        return {}
    try:
        return {int(res): int(width) for res, width in (part.split(":") for part in text.split(","))}
    except ValueError as exc:
        raise MocohdError(f"cannot read --channels {text!r}",
                          fix="write resolution:width pairs, e.g. 4:128,8:128,16:64,32:64,64:32") from exc


@app.command("pretrain")
def pretrain_command(
    data: Path = typer.Option(..., help="Frames to learn from: a folder (or .zip) of images, frame folders or videos."),
    out: Path = typer.Option(..., help="Run folder (state.pt, generator.safetensors, samples/). An existing run "
                             "there is resumed."),
    size: int = typer.Option(64, help="Image side in pixels (power of two)."),
    style_dim: int = typer.Option(256, help="Dimension of z and W (the motion space)."),
    n_mlp: int = typer.Option(4, help="Layers of the mapping network."),
    channels: Optional[str] = typer.Option(None, help="Generator widths per resolution, e.g. 4:128,8:96,16:64,32:48,"
                                           "64:32 (default: 128 at 4 px narrowing to 32 at the top)."),
    d_channels: Optional[str] = typer.Option(None, help="Discriminator widths (default: the generator's)."),
    batch_size: int = typer.Option(16, min=2, help="Images per step."),
    steps: int = typer.Option(5000, min=1, help="Total training steps (a resumed run continues up to this)."),
    lr: float = typer.Option(0.002, help="Adam learning rate."),
    r1_gamma: float = typer.Option(1.0, help="R1 weight; negative: 0.0002 * size^2 / batch (StyleGAN2-ADA)."),
    augment: str = typer.Option("auto", help="DiffAugment (colour, translation, cutout): auto (on for datasets "
                                "under 20k frames), diffaug or none."),
    max_images: int = typer.Option(100_000, min=1, help="Read at most this many frames (evenly spaced)."),
    seed: int = typer.Option(0, help="Random seed."),
    sample_every: int = typer.Option(250, min=1, help="Write a sample grid (samples/) every N steps."),
    checkpoint_minutes: float = typer.Option(5.0, help="Save the resumable state and the export this often."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    precision: str = typer.Option("fp32", help="fp32, bf16 or fp16 (CUDA)."),
    no_resume: bool = typer.Option(False, "--no-resume", help="Refuse to continue a run found in --out."),
) -> None:
    """Pre-train a StyleGAN2 image generator (non-saturating loss, lazy R1, EMA, DiffAugment)."""
    from mocohd_plugins.stylegan2.pretrain import PretrainConfig, Pretrainer, load_frames

    config = PretrainConfig(size=size, style_dim=style_dim, n_mlp=n_mlp, channels=_parse_channels(channels),
                            d_channels=_parse_channels(d_channels), batch_size=batch_size, steps=steps, lr=lr,
                            r1_gamma=r1_gamma, augment=augment, seed=seed, precision=precision,
                            sample_every=sample_every, checkpoint_minutes=checkpoint_minutes)
    frames = load_frames(data, size, max_images=max_images)
    export = Pretrainer(config, frames, out, device=device).run(resume=not no_resume)
    console.print(f"image generator written to {export} (use it with --checkpoint)")


@app.command("backbone-grid")
def backbone_grid_command(
    checkpoint: Path = typer.Argument(..., help="Image-generator checkpoint (.safetensors or .pt)."),
    out: Path = typer.Option(..., help="PNG file to write."),
    num: int = typer.Option(36, "--num", "-n", min=1, help="Number of samples."),
    seed: int = typer.Option(0, help="Random seed."),
    truncation: float = typer.Option(1.0, help="Truncation towards the mean latent."),
    scale: int = typer.Option(1, min=1, help="Enlarge the grid by this factor (nearest neighbour)."),
) -> None:
    """Write a grid of image samples of a backbone (e.g. the docs' backbone_samples_*.png)."""
    from mocohd_plugins.stylegan2.pretrain import backbone_grid

    path = backbone_grid(checkpoint, out, n=num, seed=seed, truncation=truncation, scale=scale)
    console.print(f"wrote {path}")
