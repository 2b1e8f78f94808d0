"""BigGAN-deep backbone (pytorch-pretrained-BigGAN layout), registered as "biggan"."""
from mocohd_cli.plugin_api import load_class_labels

from .config import BigGANConfig
from .generator import BigGANGenerator

__all__ = ["BigGANConfig", "BigGANGenerator", "load_class_labels"]
