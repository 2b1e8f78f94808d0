"""BigGAN-deep backbone (pytorch-pretrained-BigGAN layout), registered as "biggan"."""
from mocohd_cli.data.labels import load_class_labels

from .config import BigGANConfig
from .generator import BigGANGenerator

__all__ = ["BigGANConfig", "BigGANGenerator", "load_class_labels"]
