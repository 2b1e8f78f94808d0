"""Memory of training through the frozen StyleGAN2 at high resolution, on paper: the bytes autograd
keeps for the backward pass of one clip's synthesis, with and without `--checkpointing`.

Counted, not timed: the network runs on PyTorch's meta device (shapes only, no arithmetic), and
every tensor autograd saves is added up (torch.autograd.graph.saved_tensors_hooks). The bf16
column runs the layers' bf16 path (the meta device has no autocast; the layers cast explicitly).
Weights (about 120 MB in fp32 at 1024 px), the discriminators' activations and the optimisers are
not included (the motion model and its Adam state are a few MB).

Usage: python benchmarks/train_memory.py [--size 1024] [--frames 16] [--channel-multiplier 2]
"""
from __future__ import annotations

import argparse
import contextlib
from unittest import mock

import torch

from mocohd_plugins.stylegan2 import StyleGAN2Generator, modulated

GIB = 2 ** 30


@contextlib.contextmanager
def bf16_layers(enabled: bool):
    """The layers' bf16 path without autocast (which the meta device lacks): the policy's
    convolutions cast their inputs and weights to bf16 exactly as under autocast."""
    if not enabled:
        yield
        return
    with mock.patch.object(modulated, "autocast_dtype", lambda x: torch.bfloat16), \
            mock.patch.object(modulated, "autocast_off", lambda x: contextlib.nullcontext()):
        yield


def saved_bytes(model: StyleGAN2Generator, frames: int, *, checkpointing: bool, bf16: bool) -> tuple[int, int]:
    """(bytes kept between forward and backward, the largest single resolution block's bytes,
    which the backward pass recomputes at once) for one clip of `frames` frames."""
    total = {"bytes": 0}

    def pack(tensor):
        total["bytes"] += tensor.numel() * tensor.element_size()
        return tensor

    def count(fn) -> int:
        total["bytes"] = 0
        with bf16_layers(bf16), torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            fn()
        return total["bytes"]

    w = torch.zeros(frames, model.style_dim, device="meta", requires_grad=True)
    noise = [n.expand(frames, -1, -1, -1) for n in model.make_noise(1)]  # one draw per clip
    model.set_checkpointing(checkpointing)
    kept = count(lambda: model.render(w, noise))
    model.set_checkpointing(False)
    largest = 0
    if checkpointing:  # the backward pass redoes one block at a time, keeping its activations
        for i in range(len(model.to_rgbs)):
            side = 2 ** (i + 2)
            x = torch.zeros(frames, model.channels[side], side, side, device="meta", requires_grad=True)
            skip = torch.zeros(frames, 3, side, side, device="meta")
            largest = max(largest, count(lambda: model._block(i, x, skip, (w, w, w), noise)))
    return kept, largest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--channel-multiplier", type=int, default=2)
    args = parser.parse_args()
    with torch.device("meta"):
        model = StyleGAN2Generator(args.size, channel_multiplier=args.channel_multiplier).freeze()
    print(f"StyleGAN2 {args.size} px (channel multiplier {args.channel_multiplier}), one clip of {args.frames} "
          "frames: activations autograd keeps for the backward pass through the synthesis")
    print(f"{'':22s}{'fp32':>12s}{'bf16 policy':>14s}")
    for checkpointing in (False, True):
        rows = [saved_bytes(model, args.frames, checkpointing=checkpointing, bf16=bf16) for bf16 in (False, True)]
        label = "checkpointing" if checkpointing else "plain"
        print(f"{label:22s}" + "".join(f"{kept / GIB:11.2f}G" + " " * (2 if i else 0) for i, (kept, _) in enumerate(rows)))
        if checkpointing:
            print(f"{'+ largest block redone':22s}" + "".join(f"{largest / GIB:11.2f}G" + " " * (2 if i else 0)
                                                            for i, (_, largest) in enumerate(rows)))


if __name__ == "__main__":
    main()
