"""Data: reading video datasets (clips for training), the procedural example domains, class
labels, and writing videos (mp4 / gif / PNG frames)."""
from .clips import ClipBatchSampler, DatasetReport, VideoClips, clip_loader, clip_span

__all__ = ["ClipBatchSampler", "DatasetReport", "VideoClips", "clip_loader", "clip_span"]
