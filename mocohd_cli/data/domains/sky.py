"""(c) A time-lapse sky: clouds drifting over hills (global motion), a setting sun, fading light.

Everything is vectorised over frames in numpy: the clouds are a tileable 1/f noise field sampled
at per-frame offsets (two layers at different speeds for parallax).
"""
from __future__ import annotations

import numpy as np

from .base import Domain, RenderedVideo
from .trajectories import drift

DAY_TOP = [(40, 110, 220), (70, 140, 230), (30, 90, 190)]
DAY_HORIZON = [(170, 210, 245), (200, 225, 250), (150, 200, 240)]
DUSK_TOP = [(40, 40, 100), (60, 30, 90), (30, 50, 110)]
DUSK_HORIZON = [(250, 150, 80), (240, 110, 90), (255, 190, 110)]
GROUND = [(30, 60, 30), (50, 45, 35), (25, 40, 55), (60, 70, 35)]


def tileable_noise(rng: np.random.Generator, side: int, *, smoothness: float = 2.6) -> np.ndarray:
    """A periodic [side, side] field with a 1/f^smoothness spectrum, zero mean, unit variance."""
    spectrum = np.fft.fft2(rng.standard_normal((side, side)))
    k = np.fft.fftfreq(side)
    radius = np.sqrt(k[:, None] ** 2 + k[None, :] ** 2)
    radius[0, 0] = np.inf
    field = np.fft.ifft2(spectrum / radius ** smoothness).real
    return (field - field.mean()) / field.std()


def sample_periodic(field: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bilinear lookup of a periodic field at fractional coordinates of any shape."""
    side = field.shape[0]
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = x - x0, y - y0
    x0, y0 = x0 % side, y0 % side
    x1, y1 = (x0 + 1) % side, (y0 + 1) % side
    top = field[y0, x0] * (1 - fx) + field[y0, x1] * fx
    bottom = field[y1, x0] * (1 - fx) + field[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


def smoothstep(low: float, high: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - low) / (high - low), 0.0, 1.0)
    return t * t * (3 - 2 * t)


class TimeLapseSky(Domain):
    name = "sky"
    description = "time-lapse sky: clouds drifting over hills, a setting sun (global motion)"

    def render(self, rng: np.random.Generator, n_frames: int, size: int) -> RenderedVideo:
        pick = lambda palette: np.array(palette[int(rng.integers(len(palette)))], float)  # noqa: E731
        day_top, day_horizon, dusk_top, dusk_horizon = (pick(DAY_TOP), pick(DAY_HORIZON), pick(DUSK_TOP),
                                                        pick(DUSK_HORIZON))
        ground = pick(GROUND)
        coverage = rng.uniform(0.25, 0.75)
        tile = size
        far_field, near_field = tileable_noise(rng, tile, smoothness=2.2), tileable_noise(rng, tile, smoothness=1.9)
        hills = tileable_noise(rng, 2 * size)[0]
        # wind, in cloud-plane pixels per frame (the far layer drifts at 0.6 of it)
        cloud_x, cloud_y = drift(rng, n_frames, speed=(0.006 * size, 0.015 * size))
        horizon = rng.uniform(0.68, 0.8)
        sun_x0, sun_y0 = rng.uniform(0.2, 0.8), rng.uniform(0.15, 0.4)
        t = np.arange(n_frames) / max(1, n_frames - 1)
        sun_x = sun_x0 + rng.uniform(-0.1, 0.1) * t
        sun_y = sun_y0 + rng.uniform(0.1, 0.25) * t          # the sun sinks
        start_light = rng.uniform(0.7, 1.0)
        daylight = start_light - rng.uniform(0.2, 0.5) * t   # and the light fades towards dusk

        ys, xs = np.mgrid[0:size, 0:size].astype(float)
        v = ys / size                                          # 0 top .. 1 bottom
        light = daylight[:, None, None, None]
        top = light * day_top + (1 - light) * dusk_top
        bottom = light * day_horizon + (1 - light) * dusk_horizon
        sky = top + (bottom - top) * np.clip(v / horizon, 0, 1)[None, :, :, None] ** 1.3

        sun_d = np.hypot(xs[None] / size - sun_x[:, None, None], v[None] - sun_y[:, None, None])
        sun = smoothstep(0.075, 0.06, sun_d) + 0.35 * np.exp(-(sun_d / 0.15) ** 2)
        sun_colour = np.array([255.0, 240.0, 190.0])
        sky = sky + (sun_colour - sky) * np.clip(sun, 0, 1)[..., None]

        # clouds live on a ceiling plane seen in perspective: smaller and slower towards the horizon
        depth = 0.25 / np.maximum(horizon + 0.08 - v, 0.08)
        cx = cloud_x[:, None, None] + ((xs - size / 2) * depth)[None]
        cy = cloud_y[:, None, None] + (size * depth)[None]
        near = sample_periodic(near_field, cx, cy)
        far = sample_periodic(far_field, 0.6 * cx + 37.0, 0.6 * cy + 11.0)
        threshold = 1.2 - 1.6 * coverage
        density = np.maximum(smoothstep(threshold, threshold + 0.9, near),
                             0.7 * smoothstep(threshold + 0.2, threshold + 1.1, far))
        density *= smoothstep(horizon, horizon - 0.1, v)[None]
        cloud_light = (0.55 + 0.45 * light) * (215 + 40 * np.clip(near - threshold, 0, 1)[..., None])
        tint = (1 - light) * np.array([0.0, -30.0, -60.0])    # warmer clouds at dusk
        sky = sky + (cloud_light + tint - sky) * density[..., None]

        ridge = horizon - 0.06 * (hills[np.arange(size) * 2] + 1.5) / 3.0
        land = np.clip((v - ridge[None, :]) * size, 0, 1)      # one-pixel soft edge
        ground_colour = ground * (0.6 + 0.4 * light)
        frames = sky + (ground_colour - sky) * land[None, :, :, None]

        content = {"coverage": coverage, "horizon": horizon, "ground": ground, "wind": [
            float(cloud_x[1] - cloud_x[0]) / size if n_frames > 1 else 0.0,
            float(cloud_y[1] - cloud_y[0]) / size if n_frames > 1 else 0.0]}
        motion = {"cloud_x": cloud_x / size, "cloud_y": cloud_y / size, "sun_x": sun_x, "sun_y": sun_y,
                  "daylight": daylight}
        return RenderedVideo(np.clip(frames, 0, 255).astype(np.uint8), content, motion)
