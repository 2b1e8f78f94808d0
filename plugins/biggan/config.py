"""BigGAN-deep architecture settings, read from a pytorch-pretrained-BigGAN `config.json`.

The field names and defaults are those of that format (the 128 px ImageNet model), so a
folder written for `BigGAN.from_pretrained` reads here unchanged.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mocohd_cli.plugin_api import check_value, Field, MocohdError, read_fields, read_small_text

# (upsample?, input channels, output channels), channels in units of channel_width.
_DEFAULT_LAYERS = [
    (False, 16, 16), (True, 16, 16), (False, 16, 16), (True, 16, 8), (False, 8, 8),
    (True, 8, 4), (False, 4, 4), (True, 4, 2), (False, 2, 2), (True, 2, 1),
]


# Bounds far above the published models (BigGAN-deep 512: channel_width 128, 14 layers, 1000 classes)
# that keep a forged config.json from describing a network no machine could build.
FIELDS = (
    Field("output_dim", int, lo=4, hi=4096, default=128), Field("z_dim", int, lo=1, hi=4096, default=128),
    Field("class_embed_dim", int, lo=1, hi=4096, default=128), Field("channel_width", int, lo=1, hi=4096, default=128),
    Field("num_classes", int, lo=1, hi=100_000, default=1000), Field("layers", list, hi=64, default=None),
    Field("attention_layer_position", int, lo=-1, hi=64, default=8), Field("eps", float, lo=0, hi=1, default=1e-4),
    Field("n_stats", int, lo=2, hi=1000, default=51),
)
_UPSAMPLE_AS_INT = Field("layers[i][0] (upsample)", int, lo=0, hi=1)
_CHANNEL_UNITS = Field("layers[i][1:] (channel units)", int, lo=1, hi=64)


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
        what = "BigGAN config"
        checked = read_fields(values, FIELDS, source=source, what=what)
        layers = checked.pop("layers")
        config = cls(**checked)
        if layers is not None:
            config.layers = []
            for index, layer in enumerate(layers):
                if not isinstance(layer, (list, tuple)) or len(layer) != 3:
                    raise MocohdError(f"{what}: layer {index} must be [upsample, in, out], got {str(layer)[:60]}",
                                      path=source, fix="list (upsample, in, out) triples under 'layers'")
                up = layer[0] if isinstance(layer[0], bool) else check_value(_UPSAMPLE_AS_INT, layer[0],
                                                                             source=source, what=what) == 1
                config.layers.append((up, *(check_value(_CHANNEL_UNITS, units, source=source, what=what)
                                            for units in layer[1:])))
        config.validate(source)
        return config

    @classmethod
    def from_json_file(cls, path: str | Path) -> "BigGANConfig":
        path = Path(path)
        fix = "pass a pytorch-pretrained-BigGAN folder with a valid config.json"
        try:
            values = json.loads(read_small_text(path, "BigGAN config", fix=fix))
        except (ValueError, RecursionError) as exc:
            raise MocohdError(f"cannot read the BigGAN config ({exc})", path=path,
                              fix="pass a pytorch-pretrained-BigGAN folder with a valid config.json") from exc
        if not isinstance(values, dict):
            raise MocohdError("a BigGAN config.json must hold one JSON object", path=path)
        return cls.from_dict(values, source=path)

    def minimum_weights(self) -> int:
        """A lower bound on the network's weight count (the blocks' 3x3 and 1x1 convolutions and
        the class embedding): compared with the weights a file holds before anything is built."""
        count = self.num_classes * self.z_dim
        for _up, cin, cout in self.layers:
            channels, middle = self.channel_width * cin, self.channel_width * cin // 4
            count += 2 * 9 * middle * middle + middle * (channels + self.channel_width * cout)
        return count

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
