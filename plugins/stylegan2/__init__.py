"""StyleGAN2 backbone: rosinality/stylegan2-pytorch checkpoints, motion in W.

`StyleGAN2Generator` is registered under the entry point "stylegan2"; `Discriminator` is the
matching rosinality-layout discriminator used for GAN pre-training.
"""
from .generator import StyleGAN2Generator, default_channels

__all__ = ["StyleGAN2Generator", "default_channels"]
