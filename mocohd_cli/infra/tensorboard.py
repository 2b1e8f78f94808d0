"""What a run adds to TensorBoard besides scalars: sample videos and the run's hyper-parameters.

`SummaryWriter.add_video` needs moviepy 1.x (it imports moviepy.editor, which moviepy 2 removed)
and otherwise writes nothing; `log_video` writes the same record (an image summary holding an
animated GIF, which TensorBoard's image tab plays) with Pillow.
"""
from __future__ import annotations

import io

from PIL import Image
import numpy as np

# add_hparams takes numbers, strings and booleans only
_HPARAM_TYPES = (bool, int, float, str)


def gif_bytes(frames: np.ndarray, fps: float) -> bytes:
    """uint8 frames [T, H, W, 3] -> an animated GIF that loops."""
    images = [Image.fromarray(frame) for frame in frames]
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:],
                   duration=max(int(round(1000 / fps)), 20), loop=0)
    return buffer.getvalue()


def log_video(writer, tag: str, frames: np.ndarray, step: int, *, fps: float = 8.0) -> None:
    """One video (uint8 [T, H, W, 3]) as TensorBoard's add_video records it."""
    from tensorboard.compat.proto.summary_pb2 import Summary

    t, h, w, c = frames.shape
    image = Summary.Image(height=h, width=w, colorspace=c, encoded_image_string=gif_bytes(frames, fps))
    writer._get_file_writer().add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), step)


def log_hparams(writer, hparams: dict, metrics: dict[str, float]) -> None:
    """The run's settings (lists as text, None left out) against its final metrics, written through
    the run's own writer (add_hparams would open a second writer and event file for them)."""
    from torch.utils.tensorboard.summary import hparams as hparams_summaries

    clean = {k: (v if isinstance(v, _HPARAM_TYPES) else str(v)) for k, v in hparams.items() if v is not None}
    if not metrics:
        return
    values = {f"hparam/{k}": float(v) for k, v in metrics.items()}
    file_writer = writer._get_file_writer()
    for summary in hparams_summaries(clean, values):
        file_writer.add_summary(summary)
    for tag, value in values.items():
        writer.add_scalar(tag, value)
