"""mocohd: video from a frozen pre-trained image generator (MoCoGAN-HD, ICLR 2021).

The library behind the `mocohd` command. The names most programs need are here:
`load_backbone`, `load_motion`, `generate_videos`, `write_videos`, `TrainConfig` and `train`;
the layers they come from are described in the README ("Layout").
"""
from .data.video import write_videos
from .infra.errors import MocohdError
from .models.backbone import ImageGenerator, discover_backbones, load_backbone
from .models.generation import generate_videos
from .models.motion import MotionGenerator, load_motion
from .training import TrainConfig, train
from .workflows import zoo as _zoo  # noqa: F401  (registers the zoo: and example: references, infra/hub.py)

__version__ = "0.1.0"
__all__ = ["ImageGenerator", "MocohdError", "MotionGenerator", "TrainConfig", "discover_backbones",
           "generate_videos", "load_backbone", "load_motion", "train", "write_videos", "__version__"]
