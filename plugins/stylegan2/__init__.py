"""StyleGAN2 backbone: rosinality/stylegan2-pytorch checkpoints, motion in W.

`StyleGAN2Generator` is registered under the entry point "stylegan2"; `Discriminator` is the
matching rosinality-layout discriminator used for GAN pre-training.
"""
from .discriminator import Discriminator
from .generator import StyleGAN2Generator, default_channels

__all__ = ["Discriminator", "StyleGAN2Generator", "default_channels"]
