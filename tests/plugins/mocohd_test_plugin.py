"""A third-party plugin for tests/test_plugin_objective.py: an objective and a loss term, found by entry
points only (the test writes the distribution's metadata), importing nothing but mocohd_cli.plugin_api."""
from __future__ import annotations

from torch import nn

from mocohd_cli.plugin_api import Objective, Term


class ClipLSGAN(Objective):
    """A least-squares GAN on whole clips with one small 3-D convolution: real -> 1, generated -> 0."""

    def __init__(self, config, backbone):
        super().__init__()
        self.net = nn.Sequential(nn.Conv3d(3, 4, 3, padding=1), nn.LeakyReLU(0.2), nn.AdaptiveAvgPool3d(1),
                                 nn.Flatten(), nn.Linear(4, 1))

    def score(self, clips):
        return self.net(clips.transpose(1, 2))  # [B, T, 3, H, W] -> [B, 3, T, H, W]

    def d_loss(self, real, fake, *, rng, **extra):
        return {"plugin": ((self.score(real) - 1) ** 2).mean() + (self.score(fake) ** 2).mean()}

    def g_loss(self, real, fake, rollout, *, rng, **extra):
        return {"plugin": ((self.score(fake) - 1) ** 2).mean()}


class SmoothSteps(Term):
    """Penalises the change between consecutive motion steps (in PCA units), with its --term weight."""

    name = "smooth"

    def __init__(self, weight: float):
        self.weight = weight

    @classmethod
    def build(cls, context):
        weight = context.weight(cls.name)
        return cls(weight) if weight else None

    def g_loss(self, step):
        walk = step.rollout.displacements
        return {"smooth": self.weight * (walk[:, 2:] - 2 * walk[:, 1:-1] + walk[:, :-2]).pow(2).mean()}
