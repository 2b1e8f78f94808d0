"""BigGAN-deep architecture settings, read from a pytorch-pretrained-BigGAN `config.json`.

The field names and defaults are those of that format (the 128 px ImageNet model), so a
folder written for `BigGAN.from_pretrained` reads here unchanged.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mocohd_cli.infra.errors import MocohdError

# (upsample?, input channels, output channels), channels in units of channel_width.
_DEFAULT_LAYERS = [
    (False, 16, 16), (True, 16, 16), (False, 16, 16), (True, 16, 8), (False, 8, 8),
    (True, 8, 4), (False, 4, 4), (True, 4, 2), (False, 2, 2), (True, 2, 1),
]


@dataclass
class BigGANConfig:
    output_dim: int = 128
    z_dim: int = 128
    class_embed_dim: int = 128
    channel_width: int = 128
    num_classes: int = 1000
    layers: list[tuple[bool, int, int]] = field(default_factory=lambda: list(_DEFAULT_LAYERS))
    attention_layer_position: int = 8
    eps: float = 1e-4
    n_stats: int = 51

    @classmethod
    def from_dict(cls, values: dict, *, source: str | Path | None = None) -> "BigGANConfig":
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(values) - known)
        if unknown:
            raise MocohdError(f"unknown BigGAN config field(s): {', '.join(unknown)}", path=source,
                              fix=f"a pytorch-pretrained-BigGAN config.json has only: {', '.join(sorted(known))}")
        config = cls(**values)
        config.layers = [(bool(up), int(cin), int(cout)) for up, cin, cout in config.layers]
        config.validate(source)
        return config

    @classmethod
    def from_json_file(cls, path: str | Path) -> "BigGANConfig":
        path = Path(path)
        try:
            values = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise MocohdError(f"cannot read the BigGAN config ({exc})", path=path,
                              fix="pass a pytorch-pretrained-BigGAN folder with a valid config.json") from exc
        if not isinstance(values, dict):
            raise MocohdError("a BigGAN config.json must hold one JSON object", path=path)
        return cls.from_dict(values, source=path)

    def to_dict(self) -> dict:
        values = asdict(self)
        values["layers"] = [list(layer) for layer in self.layers]
        return values

    def validate(self, source: str | Path | None = None) -> None:
        def bad(message: str, fix: str) -> MocohdError:
            return MocohdError(f"invalid BigGAN config: {message}", path=source, fix=fix)

        if self.class_embed_dim != self.z_dim:
            # The generator's condition vector is [z, embed] of size 2 * z_dim.
            raise bad(f"class_embed_dim ({self.class_embed_dim}) must equal z_dim ({self.z_dim})",
                      "BigGAN-deep concatenates z and the class embedding into a 2*z_dim vector")
        if self.n_stats < 2:
            raise bad(f"n_stats must be at least 2, got {self.n_stats}",
                      "batch-norm statistics are stored for n_stats truncation values in [0, 1]")
        if not self.layers:
            raise bad("no layers", "list (upsample, in, out) triples under 'layers'")
        resolution = 4
        for index, (up, cin, cout) in enumerate(self.layers):
            if index and cin != self.layers[index - 1][2]:
                raise bad(f"layer {index} takes {cin} channel units but layer {index - 1} gives "
                          f"{self.layers[index - 1][2]}", "chain the layers' widths")
            channels = self.channel_width * cin
            if cin != cout and cin != 2 * cout:
                raise bad(f"layer {index} goes from {cin} to {cout} channel units",
                          "a BigGAN-deep block keeps its width or halves it")
            if channels // 4 == 0:
                raise bad(f"layer {index} is too narrow ({channels} channels)", "widen channel_width")
            if index == self.attention_layer_position and (channels % 8 or resolution % 2):
                raise bad(f"the attention layer needs a channel count divisible by 8 and an even size "
                          f"(got {channels} channels at {resolution} px)", "move attention_layer_position")
            resolution *= 2 if up else 1
        if self.layers[0][1] != 16:
            raise bad(f"the first layer must take 16 channel units (the 4x4 seed), got {self.layers[0][1]}",
                      "start 'layers' with an input of 16")
        if self.layers[-1][2] != 1:
            raise bad("the last layer must output 1 channel unit", "end 'layers' with an output of 1")
        if self.channel_width < 3:
            raise bad("channel_width must be at least 3 (the RGB output takes 3 of its channels)",
                      "raise channel_width")
        if resolution != self.output_dim:
            raise bad(f"the layers produce {resolution} px but output_dim is {self.output_dim}",
                      "make the number of upsampling layers match output_dim")
