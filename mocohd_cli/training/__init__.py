"""Training the motion generator: configuration, objectives (in-domain, cross-domain) and the trainer loop."""
from .trainer import TrainConfig, train

__all__ = ["TrainConfig", "train"]
