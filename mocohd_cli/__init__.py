"""mocohd: video from a frozen pre-trained image generator (MoCoGAN-HD, ICLR 2021)."""
from .backbone import ImageGenerator, discover_backbones, load_backbone
from .errors import MocohdError

__version__ = "0.1.0"
__all__ = ["ImageGenerator", "MocohdError", "discover_backbones", "load_backbone", "__version__"]
