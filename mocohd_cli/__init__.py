"""mocohd: video from a frozen pre-trained image generator (MoCoGAN-HD, ICLR 2021).

The library behind the `mocohd` command. The names most programs need are here:
`load_backbone`, `load_motion`, `generate_videos`, `write_videos`, `TrainConfig` and `train`;
the layers they come from are described in docs/architecture.md.
"""
from .infra.threads import prepare_environment as _prepare_threads

_prepare_threads()  # OMP_WAIT_POLICY=PASSIVE unless set, before torch loads OpenMP (docs/threads.md)

from .data.video import write_videos  # noqa: E402
from .infra.errors import MocohdError  # noqa: E402
from .infra.version import __version__  # noqa: E402
from .models.backbone import ImageGenerator, discover_backbones, load_backbone  # noqa: E402
from .models.generation import generate_videos  # noqa: E402
from .models.motion import MotionGenerator, load_motion  # noqa: E402
from .training import TrainConfig, train  # noqa: E402
from .workflows import zoo as _zoo  # noqa: E402,F401  (registers the zoo: and example: references, infra/hub.py)

__all__ = ["ImageGenerator", "MocohdError", "MotionGenerator", "TrainConfig", "discover_backbones",
           "generate_videos", "load_backbone", "load_motion", "train", "write_videos", "__version__"]
