"""`--preset NAME`: the settings of the authors' per-dataset training scripts (docs/method.md,
section "Settings of the release"), and the built-in examples' own schedules (example-train,
example-transfer; chosen unasked when the image generator is a shipped example backbone).

A preset holds `TrainConfig` values; options given on the command line override them. It never
holds `batch_size`: the release's `--batchSize` is the GLOBAL batch (its train.py divides it by
the number of GPUs), ours is per process. A preset therefore records the global batch in
`Preset.global_batch`, and the trainer divides it by the number of processes (world size) to get
the clips per process, so one process, or G processes, reproduce the script's batch of clips per
optimiser step.

Every script also passes `--workers 8` (data-loader workers, divided by the GPU count); that is a
property of the machine, not of the method, so presets leave `workers` alone.

The image generators themselves (the scripts' `--img_g_weights` files) are not part of a preset:
pass them with `--checkpoint`. `generator_resolution` records the scripts' `--style_gan_size`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..infra.errors import MocohdError
from .example_schedule import EXAMPLE_SIZE, example_schedule

RELEASE_REPO = "snap-research/MoCoGAN-HD"
RELEASE_COMMIT = "27356ba"  # HEAD of the release when these settings were read

# Settings every released training script shares: passed on its command line (time_step, lr) or
# left at the release's option defaults (everything else). 4000 x 250 latents for the PCA.
_SHARED = dict(
    frames=16, time_step=2, video_frame_size=128,
    h_dim=384, n_pca=384, w_residual=0.2, pca_samples=1_000_000,
    d_scales=2, d_channels=64, d_layers=3, gp_weight=10.0,
    lr=1e-4, beta1=0.5, beta2=0.999, g_steps=5,
)
_IN_DOMAIN = dict(_SHARED, mode="in-domain")
# Cross-domain scripts add --cross_domain; the contrastive discriminator keeps the option defaults.
_CROSS_DOMAIN = dict(
    _SHARED, mode="cross-domain",
    image_d_channels=96, proj_dim=256, queue_size=4096, momentum=0.999, temperature=0.07,
    w_contrastive=2.0, w_match=1.0,
)


@dataclass(frozen=True)
class Preset:
    """One released training script as TrainConfig values.

    name: what `--preset` takes. source: the script, "<repository> <path>".
    values: TrainConfig field -> value (never `batch_size`, see `global_batch`).
    global_batch: the script's --batchSize, clips per step over all processes together.
    generator_resolution: the script's --style_gan_size (frames of its image generator).
    """

    name: str
    description: str
    source: str
    values: dict = field(default_factory=dict, hash=False)
    global_batch: int = 16
    generator_resolution: int = 256


def _script(path: str) -> str:
    return f"{RELEASE_REPO} {path}"


_PRESET_LIST = (
    Preset(
        "ucf101",
        "UCF-101, in-domain; image generator ucf-256-fid41.6761-snapshot-006935.pt (256 px). "
        "20 epochs as in the script (the README's command shows 100).",
        _script("script/ucf_101/run_train.sh"),
        dict(_IN_DOMAIN, epochs=20), global_batch=16, generator_resolution=256),
    Preset(
        "faceforensics",
        "FaceForensics, in-domain; image generator faceforensics-fid10.9920-snapshot-008765.pt (256 px).",
        _script("script/faceforensics/run_train.sh"),
        dict(_IN_DOMAIN, epochs=100), global_batch=16, generator_resolution=256),
    Preset(
        "sky-timelapse",
        "Sky time-lapse, in-domain; image generator sky-fid10.8013-snapshot-012633.pt (128 px, so "
        "generated frames are not pooled).",
        _script("script/sky_timelapse/run_train.sh"),
        dict(_IN_DOMAIN, epochs=200), global_batch=32, generator_resolution=128),
    Preset(
        "ffhq-vox",
        "Cross-domain: FFHQ faces (ffhq_256.pt, 256 px) moved like VoxCeleb talking heads. "
        "30 epochs and w_match 5.0 as in the script (the README's command shows 25 epochs and no --w_match).",
        _script("script/ffhq-vox/run_train.sh"),
        dict(_CROSS_DOMAIN, epochs=30, w_match=5.0), global_batch=16, generator_resolution=256),
    Preset(
        "ffhq-vox-1024",
        "Cross-domain: FFHQ faces at 1024 px (stylegan2-ffhq-config-f.pt) moved like VoxCeleb talking heads; "
        "w_match 5.0.",
        _script("script/ffhq-vox/run_train_1024.sh"),
        dict(_CROSS_DOMAIN, epochs=30, w_match=5.0), global_batch=16, generator_resolution=1024),
    Preset(
        "afhq-vox",
        "Cross-domain: AFHQ dogs (afhq-dog-fid7.8476-005655.pt, 512 px) moved like VoxCeleb talking heads.",
        _script("script/afhq-vox/run_train.sh"),
        dict(_CROSS_DOMAIN, epochs=100), global_batch=8, generator_resolution=512),
    Preset(
        "anime-vox",
        "Cross-domain: anime portraits (2020-01-11-skylion-stylegan2-animeportraits-networksnapshot-024664.pt, "
        "512 px) moved like VoxCeleb talking heads.",
        _script("script/anime-vox/run_train.sh"),
        dict(_CROSS_DOMAIN, epochs=100), global_batch=8, generator_resolution=512),
    Preset(
        "church-tlvdb",
        "Cross-domain: LSUN churches (stylegan2-church-config-f.pt, 256 px) moved like TLVDB time-lapse videos.",
        _script("script/lsun_church-tlvdb/run_train.sh"),
        dict(_CROSS_DOMAIN, epochs=200), global_batch=16, generator_resolution=256),
)


def _example_presets() -> tuple[Preset, ...]:
    """The built-in examples' own schedules (training/example_schedule.py): short runs for 64 px backbones
    on a CPU. `mocohd train --checkpoint example:NAME` and `mocohd transfer --image-domain example:NAME` pick
    them when no --preset is given (mocohd_cli/commands/train.py)."""
    def values(mode: str) -> dict:
        schedule = example_schedule(mode)
        return {k: v for k, v in schedule.items() if k != "batch_size"}  # the batch is global_batch here

    return (
        Preset(EXAMPLE_PRESETS["in-domain"],
               "The built-in in-domain example (`mocohd train` without arguments): 80 short iterations for a 64 px "
               "backbone on a CPU, with the shared-drift penalty, the latent motion discriminator (your videos "
               "are projected into the backbone once, cached) and the identity loss (an encoder trained on your "
               "videos once, cached).",
               "mocohd_cli/training/example_schedule.py example_schedule('in-domain')", values("in-domain"),
               global_batch=example_schedule("in-domain")["batch_size"], generator_resolution=EXAMPLE_SIZE),
        Preset(EXAMPLE_PRESETS["cross-domain"],
               "The built-in cross-domain example (`mocohd transfer` without arguments): 60 short iterations for a "
               "64 px backbone on a CPU, a narrow contrastive discriminator, the video discriminator on motion.",
               "mocohd_cli/training/example_schedule.py example_schedule('cross-domain')", values("cross-domain"),
               global_batch=example_schedule("cross-domain")["batch_size"], generator_resolution=EXAMPLE_SIZE),
    )


# the example preset of each mode
EXAMPLE_PRESETS = {"in-domain": "example-train", "cross-domain": "example-transfer"}
PRESETS: dict[str, Preset] = {preset.name: preset for preset in (*_PRESET_LIST, *_example_presets())}


def get_preset(name: str) -> Preset:
    """The preset called `name`; a MocohdError listing the known names otherwise."""
    if name not in PRESETS:
        known = ", ".join(PRESETS)
        raise MocohdError(f"unknown preset {name!r} (known: {known})", fix=f"use one of {known}")
    return PRESETS[name]


def preset_values(preset: Preset) -> dict:
    """A preset's settings as TrainConfig values (its total batch becomes --global-batch)."""
    return {**preset.values, "global_batch": preset.global_batch, "preset": preset.name}


def preset_differences(preset: Preset, values: dict) -> dict[str, tuple]:
    """{field: (value given, the preset's value)} for the settings in `values` (what was given, on the
    command line or in --config) that the preset sets otherwise."""
    own = preset_values(preset)
    return {k: (v, own[k]) for k, v in values.items() if k in own and k != "preset" and v != own[k]}


__all__ = ["EXAMPLE_PRESETS", "PRESETS", "Preset", "RELEASE_COMMIT", "RELEASE_REPO", "get_preset",
           "preset_differences", "preset_values"]
