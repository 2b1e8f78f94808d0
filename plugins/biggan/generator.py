"""The BigGAN-deep backbone: class-conditional, driven by z (the motion space).

Reads pytorch-pretrained-BigGAN folders (config.json + pytorch_model.bin) and the project's
own .safetensors files. A video is a trajectory of z's; the class vector is fixed per video.
`truncation` (set by load_backbone, like every backbone's) scales the content codes (z drawn
from a normal truncated to [-2, 2], times truncation, as that project samples them) and selects
the batch-norm statistics recorded for it.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mocohd_cli.plugin_api import (ImageGenerator, MocohdError, read_safetensors, safetensors_metadata,
    torch_load_safely, write_safetensors)

from .config import BigGANConfig
from .layers import GenBlock, SelfAttention, SNConv2d, SNLinear, TruncationBatchNorm, complete_spectral_norm

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "pytorch_model.bin"
TRUNCATION_BOUND = 2.0  # z is sampled from N(0, I) truncated to [-2, 2]


class BigGANSynthesis(nn.Module):
    """Condition vector [z, class embedding] -> image; the `generator` part of the original."""
    def __init__(self, config: BigGANConfig):
        super().__init__()
        ch = config.channel_width
        condition_dim = 2 * config.z_dim
        self.seed_channels = 16 * ch
        self.gen_z = SNLinear(condition_dim, 4 * 4 * self.seed_channels)
        layers: list[nn.Module] = []
        for index, (upsample, cin, cout) in enumerate(config.layers):
            if index == config.attention_layer_position:
                layers.append(SelfAttention(ch * cin))
            layers.append(GenBlock(ch * cin, ch * cout, condition_dim, upsample=upsample,
                                   n_stats=config.n_stats, eps=config.eps))
        self.layers = nn.ModuleList(layers)
        self.bn = TruncationBatchNorm(ch, None, config.n_stats, config.eps)
        self.conv_to_rgb = SNConv2d(ch, ch, 3)

    def forward(self, condition: Tensor, truncation: float) -> Tensor:
        # The seed is laid out [N, 4, 4, C] (TensorFlow order) in the released weights.
        x = self.gen_z(condition).view(-1, 4, 4, self.seed_channels).permute(0, 3, 1, 2)
        for layer in self.layers:
            x = layer(x, condition, truncation) if isinstance(layer, GenBlock) else layer(x)
        x = F.relu(self.bn(x, truncation))
        # Only the first 3 of conv_to_rgb's outputs are used: compute just those (same result).
        weight = self.conv_to_rgb.normalized_weight()[:3]
        x = F.conv2d(x, weight, self.conv_to_rgb.bias[:3], padding=self.conv_to_rgb.padding)
        return torch.tanh(x)


class BigGANGenerator(ImageGenerator):
    name = "biggan"
    description = "BigGAN-deep, class-conditional (pytorch-pretrained-BigGAN folders, .safetensors)"

    def __init__(self, config: BigGANConfig | dict | None = None, *, truncation: float = 1.0):
        super().__init__()
        if config is None:
            config = BigGANConfig()
        elif isinstance(config, dict):
            config = BigGANConfig.from_dict(config)
        self.config = config
        self.latent_dim = self.z_dim = config.z_dim
        self.resolution = config.output_dim
        self.condition_dim = config.num_classes
        self.embeddings = nn.Linear(config.num_classes, config.z_dim, bias=False)
        self.generator = BigGANSynthesis(config)
        self.truncation = truncation

    # -- truncation ------------------------------------------------------------------------
    @property
    def truncation(self) -> float:
        return self._truncation

    @truncation.setter
    def truncation(self, value: float) -> None:
        value = float(value)
        if not 0.0 < value <= 1.0:
            raise MocohdError(f"BigGAN truncation must be in (0, 1], got {value}",
                              fix="pass a truncation such as 0.4 (1.0 = no truncation)")
        self._truncation = value

    # -- files -----------------------------------------------------------------------------
    @classmethod
    def from_checkpoint(cls, path: str | Path, **options) -> "BigGANGenerator":
        """A pytorch-pretrained-BigGAN folder (or its pytorch_model.bin), or a mocohd .safetensors."""
        if options:
            raise MocohdError(f"unknown BigGAN load option(s): {', '.join(sorted(options))}",
                              fix="BigGAN takes no load options (its truncation is set by load_backbone)")
        path = Path(path)
        if path.is_file() and path.suffix == ".safetensors":
            tensors, meta = read_safetensors(path, what="BigGAN checkpoint")
            if meta.get("mocohd_backbone") != cls.name or "config" not in meta:
                raise MocohdError("this .safetensors file is not a mocohd BigGAN checkpoint", path=path,
                                  fix="pass a file written by BigGANGenerator.save_safetensors or `mocohd convert`")
            config = BigGANConfig.from_dict(json.loads(meta["config"]), source=path)
        else:
            folder = path if path.is_dir() else path.parent
            weights = path if path.is_file() else folder / WEIGHTS_NAME
            config_file = folder / CONFIG_NAME
            if not config_file.exists() or not weights.exists():
                raise MocohdError("not a pytorch-pretrained-BigGAN checkpoint", path=path,
                                  fix=f"pass a folder holding {CONFIG_NAME} and {WEIGHTS_NAME}")
            config = BigGANConfig.from_json_file(config_file)
            tensors = torch_load_safely(weights, what="BigGAN weights")
            if not isinstance(tensors, dict):
                raise MocohdError("the weights file does not hold a state dict", path=weights,
                                  fix="pass the pytorch_model.bin of a pytorch-pretrained-BigGAN model")
        present = sum(t.numel() for t in tensors.values() if isinstance(t, Tensor))
        if config.minimum_weights() > present:
            raise MocohdError(f"the config describes a network of at least {config.minimum_weights():,} weights but the "
                              f"file holds {present:,}", path=path,
                              fix="check that config.json and the weights come from the same model")
        model = cls(config)
        model._load_weights(tensors, path)
        return model

    def _load_weights(self, tensors: dict[str, Tensor], path: Path) -> None:
        expected = self.state_dict()
        prefixes = [key[: -len("weight_orig")] for key in expected if key.endswith(".weight_orig")]
        tensors = complete_spectral_norm(tensors, prefixes)
        missing = [k for k in expected if k not in tensors]
        unexpected = [k for k in tensors if k not in expected]
        wrong = [k for k in expected if k in tensors and tuple(tensors[k].shape) != tuple(expected[k].shape)]
        if missing or unexpected or wrong:
            details = []
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
                if keys:
                    details.append(f"{label}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}")
            raise MocohdError(f"the weights do not fit the BigGAN config ({'; '.join(details)})", path=path,
                              fix="check that config.json and the weights come from the same model")
        self.load_state_dict({k: tensors[k].float() for k in expected})

    @classmethod
    def recognizes(cls, path: Path) -> bool:
        path = Path(path)
        if path.is_file() and path.suffix == ".safetensors":
            return (safetensors_metadata(path) or {}).get("mocohd_backbone") == cls.name
        folder = path if path.is_dir() else path.parent
        config_file = folder / CONFIG_NAME
        if not config_file.is_file():
            return False
        try:
            values = json.loads(config_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return isinstance(values, dict) and {"channel_width", "layers", "n_stats"} <= set(values)

    def export_config(self) -> dict:
        return self.config.to_dict()

    def save_safetensors(self, path: str | Path, **metadata) -> Path:
        """All weights in the original layout (every truncation's statistics) plus the config."""
        meta = {"mocohd_backbone": self.name, "config": self.export_config(), **metadata}
        return write_safetensors(path, self.state_dict(), meta)

    def save_pretrained(self, folder: str | Path) -> Path:
        """A pytorch-pretrained-BigGAN folder: config.json + pytorch_model.bin."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / CONFIG_NAME).write_text(json.dumps(self.export_config(), indent=2) + "\n", encoding="utf-8")
        torch.save({k: v.detach().cpu() for k, v in self.state_dict().items()}, folder / WEIGHTS_NAME)
        return folder

    # -- the contract ----------------------------------------------------------------------
    content_interpolation = "slerp"  # content codes are (scaled) Gaussian z: see ImageGenerator
    truncation_in_synthesis = True  # the truncation picks the batch-norm statistics

    def mapping(self, z: Tensor) -> Tensor:
        """Content codes are z scaled by the truncation (BigGAN has no mapping network); the same
        truncation picks the batch-norm statistics in `synthesize`."""
        return z * self.truncation

    def sample_latent(self, n: int, *, rng: torch.Generator | None = None) -> Tensor:
        device = rng.device if rng is not None else self.device
        z = torch.empty(n, self.z_dim, device=device)
        nn.init.trunc_normal_(z, a=-TRUNCATION_BOUND, b=TRUNCATION_BOUND, generator=rng)
        return self.mapping(z.to(self.device))

    def class_vectors(self, condition: Tensor | None, batch: int,
                      rng: torch.Generator | None = None) -> Tensor:
        """[B, num_classes] class vectors from one-hot/soft vectors, class indices, or None (random)."""
        if condition is None:
            return self.sample_condition(batch, rng=rng)
        if condition.dtype in (torch.int32, torch.int64) and condition.shape == (batch,):
            if condition.min() < 0 or condition.max() >= self.condition_dim:
                raise MocohdError(f"class index out of range 0..{self.condition_dim - 1}")
            return F.one_hot(condition.long(), self.condition_dim).float().to(self.device)
        if condition.shape != (batch, self.condition_dim):
            raise ValueError(f"condition must be [{batch}, {self.condition_dim}] class vectors or [{batch}] "
                             f"class indices, got {tuple(condition.shape)}")
        return condition.to(self.device, torch.float32)

    def synthesize(self, latents: Tensor, *, condition: Tensor | None = None, noise: str = "random",
                   rng: torch.Generator | None = None) -> Tensor:
        """[B, T, z_dim] -> [B, T, 3, H, W]; every frame of a video shares its class vector.

        BigGAN has no per-layer noise, so the noise mode changes nothing. All B*T frames run
        in one pass.
        """
        self.check_noise_mode(noise)
        if latents.dim() != 3 or latents.shape[-1] != self.z_dim:
            raise ValueError(f"latents must be [B, T, {self.z_dim}], got {tuple(latents.shape)}")
        batch, frames, _ = latents.shape
        classes = self.class_vectors(condition, batch, rng)
        embedding = self.embeddings(classes.to(latents.dtype))  # [B, z_dim]
        embedding = embedding[:, None].expand(batch, frames, self.z_dim)
        condition_vector = torch.cat([latents, embedding], dim=-1).reshape(batch * frames, 2 * self.z_dim)
        images = self.generator(condition_vector, self.truncation)
        return images.view(batch, frames, *images.shape[1:])
