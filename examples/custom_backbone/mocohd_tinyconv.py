"""An example third-party mocohd backbone: a tiny convolutional image generator.

It is deliberately small (a few thousand parameters) but complete: it implements the whole
`mocohd_cli.ImageGenerator` contract, reads and writes its own .safetensors checkpoints, and
is registered under the entry-point group ``mocohd.backbones`` by this folder's
pyproject.toml. docs/write_your_own_backbone.md walks through it.

    python -m mocohd_tinyconv tiny.safetensors --seed 0   # a randomly initialised checkpoint
    mocohd backbones                                        # lists "tinyconv" once installed
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mocohd_cli.plugin_api import (ImageGenerator, MocohdError, read_safetensors, safetensors_metadata,
    write_safetensors)

BACKBONE = "tinyconv"
MEAN_LATENT_SAMPLES = 1024


class TinyConvGenerator(ImageGenerator):
    """z -> MLP -> w (the motion space); w -> 4x4 seed -> (upsample, conv, FiLM(w), noise)* -> RGB."""

    name = BACKBONE
    description = "example plugin: a tiny convolutional generator (mocohd-tinyconv-example)"
    condition_dim = 0

    def __init__(self, latent_dim: int = 32, resolution: int = 32, channels: int = 32, mapping_layers: int = 2):
        super().__init__()
        if resolution < 8 or resolution & (resolution - 1):
            raise MocohdError(f"tinyconv resolution must be a power of two >= 8, got {resolution}")
        self.latent_dim = self.z_dim = latent_dim
        self.resolution = resolution
        self.channels, self.mapping_layers = channels, mapping_layers
        layers: list[nn.Module] = []
        for _ in range(mapping_layers):
            layers += [nn.Linear(latent_dim, latent_dim), nn.LeakyReLU(0.2)]
        self.mapping_net = nn.Sequential(*layers)
        self.seed = nn.Linear(latent_dim, channels * 16)
        n_blocks = int(math.log2(resolution)) - 2
        self.convs = nn.ModuleList(nn.Conv2d(channels, channels, 3, padding=1) for _ in range(n_blocks))
        self.films = nn.ModuleList(nn.Linear(latent_dim, 2 * channels) for _ in range(n_blocks))
        self.noise_strength = nn.Parameter(torch.full((n_blocks,), 0.1))
        for i in range(n_blocks):  # stored noise maps for noise="const"
            self.register_buffer(f"noise_{i}", torch.randn(1, 1, 8 << i, 8 << i))
        self.to_rgb = nn.Conv2d(channels, 3, 1)
        self.register_buffer("latent_avg", torch.zeros(latent_dim))
        self.update_latent_avg()

    # -- files ---------------------------------------------------------------------------------
    def export_config(self) -> dict:
        return {"latent_dim": self.latent_dim, "resolution": self.resolution, "channels": self.channels,
                "mapping_layers": self.mapping_layers}

    def save_safetensors(self, path: str | Path, **metadata) -> Path:
        meta = {"mocohd_backbone": BACKBONE, "config": self.export_config(), **metadata}
        return write_safetensors(path, self.state_dict(), meta)

    @classmethod
    def recognizes(cls, path: Path) -> bool:
        return (safetensors_metadata(path) or {}).get("mocohd_backbone") == BACKBONE

    @classmethod
    def from_checkpoint(cls, path: str | Path, **options) -> "TinyConvGenerator":
        if options:
            raise MocohdError(f"tinyconv takes no load options (got {', '.join(options)})")
        tensors, meta = read_safetensors(path, what="tinyconv checkpoint")
        if meta.get("mocohd_backbone") != BACKBONE:
            raise MocohdError("not a tinyconv checkpoint", path=path,
                              fix="pass a file written by TinyConvGenerator.save_safetensors")
        model = cls(**json.loads(meta["config"]))
        try:
            model.load_state_dict(tensors, strict=True)
        except RuntimeError as exc:
            raise MocohdError(f"the tensors do not fit the stored config ({exc})", path=path) from exc
        return model

    # -- the contract ----------------------------------------------------------------------------
    @torch.no_grad()
    def update_latent_avg(self) -> None:
        """Mean w over a fixed set of z (for truncation)."""
        z = torch.randn(MEAN_LATENT_SAMPLES, self.z_dim, generator=torch.Generator().manual_seed(0))
        self.latent_avg.copy_(self.mapping_net(z.to(self.latent_avg.device)).mean(0))

    def mapping(self, z: Tensor) -> Tensor:
        w = self.mapping_net(z)
        return w if self.truncation == 1.0 else self.latent_avg + self.truncation * (w - self.latent_avg)

    def synthesize(self, latents: Tensor, *, condition: Tensor | None = None, noise: str = "random",
                   rng: torch.Generator | None = None) -> Tensor:
        """[B, T, D] -> [B, T, 3, H, W]; all B*T frames in one pass, one noise draw per video."""
        self.check_noise_mode(noise)
        if condition is not None:
            raise MocohdError("tinyconv is unconditional: it takes no class condition")
        batch, frames, dim = latents.shape
        w = latents.reshape(batch * frames, dim)
        x = self.seed(w).view(-1, self.channels, 4, 4)
        for i, (conv, film) in enumerate(zip(self.convs, self.films)):
            x = conv(F.interpolate(x, scale_factor=2, mode="nearest"))
            scale, shift = film(w).chunk(2, dim=1)
            x = x * (1 + scale[:, :, None, None]) + shift[:, :, None, None]
            if noise != "none":
                side = x.shape[-1]
                if noise == "const":
                    maps = getattr(self, f"noise_{i}").expand(batch * frames, -1, -1, -1)
                else:  # one map per video, the same for all of its frames
                    device = rng.device if rng is not None else x.device
                    maps = torch.randn(batch, 1, 1, side, side, generator=rng, device=device).to(x)
                    maps = maps.expand(-1, frames, -1, -1, -1).reshape(batch * frames, 1, side, side)
                x = x + self.noise_strength[i] * maps
            x = F.leaky_relu(x, 0.2)
        images = torch.tanh(self.to_rgb(x))
        return images.view(batch, frames, 3, self.resolution, self.resolution)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write a randomly initialised tinyconv checkpoint.")
    parser.add_argument("out", type=Path, help="output .safetensors file")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--latent-dim", type=int, default=32)
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    model = TinyConvGenerator(latent_dim=args.latent_dim, resolution=args.resolution)
    print(f"wrote {model.save_safetensors(args.out)}")


if __name__ == "__main__":
    main()
