"""mocohd: video from a frozen pre-trained image generator (MoCoGAN-HD, ICLR 2021).

The library behind the `mocohd` command: `load_backbone` and `load_motion` here; training in
`mocohd_cli.training.trainer` (`TrainConfig`, `train`), sampling in `mocohd_cli.workflows.sampling`, video files
in `mocohd_cli.data.video`.
"""
from .models.backbone import ImageGenerator, discover_backbones, load_backbone
from .infra.errors import MocohdError
from .models.motion import MotionGenerator, load_motion

__version__ = "0.1.0"
__all__ = ["ImageGenerator", "MocohdError", "MotionGenerator", "discover_backbones", "load_backbone", "load_motion",
           "__version__"]
