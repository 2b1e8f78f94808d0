"""Measuring generated videos: feature metrics with StyleGAN-V's definitions (FVD, FID, KID/KVD,
ISV), ACD, and ground-truth metrics on the procedural domains (docs/evaluation.md)."""
