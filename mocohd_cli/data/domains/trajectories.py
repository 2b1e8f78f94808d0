"""Smooth random factor trajectories shared by the procedural domains.

Every function takes a numpy Generator and the number of frames T and returns float arrays of
length T, so a video's motion is a deterministic function of its seed.
"""
from __future__ import annotations

import numpy as np


def smooth_wave(rng: np.random.Generator, n_frames: int, *, period: tuple[float, float],
                amplitude: float, harmonics: int = 2) -> np.ndarray:
    """A sum of a few sinusoids with random phases: a slow, smooth wander in [-amplitude, amplitude]."""
    t = np.arange(n_frames, dtype=np.float64)
    wave = np.zeros(n_frames)
    weights = rng.uniform(0.5, 1.0, harmonics) / np.arange(1, harmonics + 1)
    for k, weight in enumerate(weights, start=1):
        frequency = k / rng.uniform(*period)
        wave += weight * np.sin(2 * np.pi * frequency * t + rng.uniform(0, 2 * np.pi))
    return amplitude * wave / weights.sum()


def blinks(rng: np.random.Generator, n_frames: int, *, gap: tuple[int, int] = (8, 20)) -> np.ndarray:
    """Eye openness in [0, 1]: open most of the time, with 3-frame blinks every `gap` frames."""
    openness = np.ones(n_frames)
    shape = np.array([0.45, 0.0, 0.5])  # closing, shut, reopening
    start = int(rng.integers(0, gap[1]))
    while start < n_frames:
        stop = min(start + len(shape), n_frames)
        openness[start:stop] = shape[: stop - start]
        start += int(rng.integers(*gap))
    return openness


def talking(rng: np.random.Generator, n_frames: int) -> np.ndarray:
    """Mouth openness in [0, 1]: syllables (|sin| of a jittered phase) during speech, closed in pauses."""
    rate = rng.uniform(0.18, 0.3)  # syllables per frame
    phase = np.cumsum(rate * rng.uniform(0.6, 1.4, n_frames)) + rng.uniform(0, 1)
    loudness = rng.uniform(0.6, 1.0, n_frames)
    speaking = np.ones(n_frames)
    # one or two pauses of 3-6 frames, so speech has rhythm
    for _ in range(int(rng.integers(1, 3))):
        start = int(rng.integers(0, max(1, n_frames - 3)))
        speaking[start:start + int(rng.integers(3, 7))] = 0.0
    return np.clip(np.abs(np.sin(np.pi * phase)) * loudness * speaking, 0.0, 1.0)


def drift(rng: np.random.Generator, n_frames: int, *, speed: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Constant-velocity 2-D displacement (x, y) from a random start, speed in units per frame."""
    angle = rng.uniform(0, 2 * np.pi)
    velocity = rng.uniform(*speed) * np.array([np.cos(angle), 0.3 * np.sin(angle)])
    start = rng.uniform(0, 1000, 2)
    t = np.arange(n_frames, dtype=np.float64)
    return start[0] + velocity[0] * t, start[1] + velocity[1] * t
