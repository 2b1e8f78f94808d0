"""The identity encoder and the identity loss (`--w-identity`; docs/method.md, "Additions").

A real video keeps its content: the same face, hair and colours in every frame. The discriminators
learn that slowly, and in a backbone whose latent directions each move identity together with pose,
the motion generator's walks change the face as they move it (docs/examples.md, "Identity").

The identity encoder is a small CNN trained contrastively on the training videos alone, no labels:
two frames of one video are the same identity, frames of other videos are not (InfoNCE). What stays
constant within a video (identity) is what it learns; what changes within one (the motion) it learns
to ignore. The identity loss then asks each generated frame's embedding to stay as close to frame 0's
as real videos' frames do: a hinge at the training videos' own within-video distance, so motion the
real videos show costs nothing.

Identity encoder file (`--identity-encoder FILE`, or made and cached on first use by
`mocohd_cli.training.identity`): safetensors with the encoder's weights and metadata format
"mocohd-identity-encoder", its input size, the within-video distance of its training videos and the
dataset it learnt from.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..infra.errors import MocohdError
from ..infra.files import read_safetensors, write_safetensors

FORMAT = "mocohd-identity-encoder"
# Identity is coarse (colours, shapes): the encoder sees every frame at this side, whatever the video's size.
INPUT_SIZE = 64
EMBEDDING_SIZE = 128
WIDTHS = (32, 64, 128, 128)
TEMPERATURE = 0.1
DEFAULT_STEPS = 1000
BATCH_VIDEOS = 32
# --identity-horizon: frames per video synthesised past the clip for the identity loss (each a random step of
# the unrolled latents). Two cost a quarter of the synthesis of an 8-frame clip and reach every step in time.
EXTRA_FRAMES = 2


class IdentityEncoder(nn.Module):
    """Frames [N, 3, S, S] in [-1, 1] -> unit-length identity embeddings [N, EMBEDDING_SIZE]."""

    def __init__(self):
        super().__init__()
        layers, width_in = [], 3
        for width in WIDTHS:  # 64 -> 4 px
            layers += [nn.Conv2d(width_in, width, 3, 2, 1), nn.GroupNorm(8, width), nn.SiLU()]
            width_in = width
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(width_in, EMBEDDING_SIZE)

    def forward(self, frames: Tensor) -> Tensor:
        frames = frames.float()
        if frames.shape[-1] != INPUT_SIZE or frames.shape[-2] != INPUT_SIZE:
            frames = F.interpolate(frames, size=(INPUT_SIZE, INPUT_SIZE), mode="area" if
                                   frames.shape[-1] > INPUT_SIZE else "bilinear", align_corners=None)
        return F.normalize(self.head(self.features(frames)), dim=1)


def within_video_distance(encoder: IdentityEncoder, videos: Tensor) -> Tensor:
    """Videos [B, T, 3, S, S] in [-1, 1] -> each frame's identity distance from its frame 0 [B, T-1]
    (1 - cosine of the embeddings: 0 the same identity, about 1 unrelated ones)."""
    b, t = videos.shape[:2]
    embeddings = encoder(videos.flatten(0, 1)).view(b, t, -1)
    return 1.0 - (embeddings[:, 1:] * embeddings[:, :1]).sum(-1)


def identity_loss(encoder: IdentityEncoder, videos: Tensor, real_distance: float) -> Tensor:
    """Mean over clips and frames of how far each frame's identity moves from frame 0's beyond what the
    training videos' frames do (`real_distance`)."""
    return F.relu(within_video_distance(encoder, videos) - real_distance).mean()


def train_identity_encoder(videos: Tensor, *, steps: int = DEFAULT_STEPS, seed: int = 0,
                           progress: Callable[[int, int], None] | None = None) -> tuple[IdentityEncoder, float]:
    """Train an encoder on `videos` (uint8 [N, F, 3, S, S], N >= 4 distinct videos, F >= 2 frames):
    each step, two random frames of each of BATCH_VIDEOS videos, the pairs from one video positive,
    the rest negative (symmetric InfoNCE), each frame mirrored at random. Returns the encoder (eval mode,
    frozen) and the within-video distance of `videos` it ends with."""
    n, f = videos.shape[:2]
    if n < 4 or f < 2:
        raise ValueError(f"the identity encoder learns from at least 4 videos of 2 frames, got {n} of {f}")
    generator = torch.Generator().manual_seed(seed)
    torch_state = torch.random.get_rng_state()
    torch.manual_seed(seed)  # the initial weights
    encoder = IdentityEncoder()
    torch.random.set_rng_state(torch_state)
    optimizer = torch.optim.Adam(encoder.parameters(), lr=1e-3)
    batch = min(BATCH_VIDEOS, n)
    targets = torch.arange(batch)
    for step in range(steps):
        chosen = torch.randperm(n, generator=generator)[:batch]
        first, second = (torch.randint(0, f, (batch,), generator=generator) for _ in range(2))
        views = []
        for frame in (first, second):
            x = videos[chosen, frame].float() / 127.5 - 1.0
            mirror = torch.rand(batch, generator=generator) < 0.5
            views.append(torch.where(mirror[:, None, None, None], x.flip(-1), x))
        logits = encoder(views[0]) @ encoder(views[1]).T / TEMPERATURE
        loss = (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if progress is not None:
            progress(step + 1, steps)
    encoder.eval().requires_grad_(False)
    with torch.no_grad():
        distance = float(torch.cat([within_video_distance(encoder, videos[i:i + 16].float() / 127.5 - 1.0)
                                    for i in range(0, n, 16)]).mean())
    return encoder, distance


# ---------------------------------------------------------------------------- identity encoder file
def write_identity_encoder(path: str | Path, encoder: IdentityEncoder, *, real_distance: float, data: str,
                           videos: int, steps: int) -> Path:
    return write_safetensors(path, dict(encoder.state_dict()),
                             {"format": FORMAT, "input_size": INPUT_SIZE, "real_distance": real_distance,
                              "data": data, "videos": videos, "steps": steps})


def read_identity_encoder(path: str | Path) -> tuple[IdentityEncoder, float]:
    """The encoder (eval mode, frozen) and the within-video distance of its training videos."""
    tensors, meta = read_safetensors(path, what="identity encoder file")
    fix = "pass a file written by mocohd (or leave --identity-encoder out to train one on the training videos)"
    if meta.get("format") != FORMAT:
        raise MocohdError("not an identity encoder file (its format is not "
                          f"{FORMAT!r})", path=path, fix=fix)
    try:
        real_distance = float(meta["real_distance"])
    except (KeyError, ValueError):
        raise MocohdError("the identity encoder file does not record its videos' within-video distance",
                          path=path, fix=fix) from None
    if not 0.0 <= real_distance <= 2.0:  # 1 - cosine lies in [0, 2]
        raise MocohdError(f"the identity encoder file records a within-video distance of {real_distance}, outside "
                          "[0, 2]", path=path, fix=fix)
    encoder = IdentityEncoder()
    missing = sorted(set(encoder.state_dict()) - set(tensors))
    unexpected = sorted(set(tensors) - set(encoder.state_dict()))
    if missing or unexpected:
        raise MocohdError(f"the identity encoder file's weights do not fit this encoder (missing {missing[:3]}, "
                          f"unexpected {unexpected[:3]})", path=path, fix=fix)
    try:
        encoder.load_state_dict(tensors)
    except RuntimeError as exc:
        raise MocohdError(f"the identity encoder file's weights have the wrong shapes ({str(exc)[:200]})", path=path,
                          fix=fix) from None
    if not all(torch.isfinite(t).all() for t in tensors.values()):
        raise MocohdError("the identity encoder's weights hold NaN or infinite values", path=path,
                          fix="the file is damaged: " + fix)
    return encoder.eval().requires_grad_(False), real_distance
