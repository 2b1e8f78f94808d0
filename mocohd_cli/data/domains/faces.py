"""Two face-like domains sharing one articulated rig: cartoon faces (a) and robot heads (b).

Both talk (mouth opening), blink (eye openness) and turn their heads (yaw, pitch, roll, a little
translation); the rig turns those factors into 2-D positions and foreshortening, and each domain
draws its own look over it. Frames are drawn 4x supersampled with Pillow and downsampled.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from .base import Domain, RenderedVideo
from .trajectories import blinks, smooth_wave, talking

SUPERSAMPLE = 4


def face_motion(rng: np.random.Generator, n_frames: int) -> dict[str, np.ndarray]:
    """Per-frame articulation factors of one talking head."""
    turn_bias = rng.uniform(-0.3, 0.3)
    return {
        "yaw": np.clip(turn_bias + smooth_wave(rng, n_frames, period=(18, 40), amplitude=rng.uniform(0.3, 0.6)),
                       -0.9, 0.9),                                    # -1 left .. 1 right
        "pitch": smooth_wave(rng, n_frames, period=(15, 35), amplitude=0.3),   # -1 up .. 1 down
        "roll": smooth_wave(rng, n_frames, period=(20, 45), amplitude=rng.uniform(3, 12)),  # degrees
        "shift_x": smooth_wave(rng, n_frames, period=(25, 50), amplitude=0.03),  # fraction of the frame
        "shift_y": smooth_wave(rng, n_frames, period=(12, 30), amplitude=0.02),
        "mouth_open": talking(rng, n_frames),                         # 0 closed .. 1 wide open
        "eye_open": blinks(rng, n_frames),                            # 0 shut .. 1 open
    }


@dataclass
class FacePose:
    """2-D layout of one frame's head on a canvas of side `side` (all lengths in canvas pixels)."""

    cx: float
    cy: float
    rx: float          # head half-width
    ry: float          # head half-height
    fx: float          # centre of the features (moves with yaw and pitch)
    fy: float
    eye_x: tuple[float, float]
    eye_y: float
    eye_scale: tuple[float, float]   # horizontal foreshortening of the (viewer's) left and right eye
    ear_x: tuple[float, float]
    ear_scale: tuple[float, float]   # 0 = hidden behind the head
    nose: tuple[float, float]
    mouth: tuple[float, float]
    mouth_scale: float
    eye_open: float
    mouth_open: float
    yaw: float

    @classmethod
    def layout(cls, side: int, width: float, height: float, factors: dict[str, float]) -> "FacePose":
        yaw, pitch = factors["yaw"], factors["pitch"]
        cx = side * (0.5 + factors["shift_x"])
        cy = side * (0.5 + factors["shift_y"])
        rx = side * 0.25 * width * (1 - 0.1 * abs(yaw))
        ry = side * 0.31 * height
        fx = cx + yaw * rx * 0.45
        fy = cy + pitch * ry * 0.15
        eye_dx = rx * 0.42 * (1 - 0.2 * abs(yaw))
        sides = (-1.0, 1.0)
        # the eye on the far side of the turn shrinks, the near one grows a little
        eye_scale = tuple(1 - 0.45 * max(0.0, s * yaw) + 0.1 * max(0.0, -s * yaw) for s in sides)
        ear_x = tuple(cx + s * rx * 0.97 - yaw * rx * 0.25 for s in sides)
        ear_scale = tuple(float(np.clip(1 - 1.3 * max(0.0, s * yaw), 0.0, 1.0)) for s in sides)
        return cls(cx, cy, rx, ry, fx, fy, (fx - eye_dx, fx + eye_dx), fy - ry * 0.08, eye_scale,
                   ear_x, ear_scale, (fx + yaw * rx * 0.22, fy + ry * 0.17),
                   (fx + yaw * rx * 0.1, fy + ry * 0.47), 1 - 0.25 * abs(yaw),
                   factors["eye_open"], factors["mouth_open"], yaw)


def _ellipse(draw: ImageDraw.ImageDraw, x: float, y: float, rx: float, ry: float, **style) -> None:
    draw.ellipse([x - rx, y - max(ry, 0.5), x + rx, y + max(ry, 0.5)], **style)


def _vertical_gradient(side: int, top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    weight = np.linspace(0.0, 1.0, side)[:, None, None]
    column = (1 - weight) * top[None, None, :] + weight * bottom[None, None, :]
    return np.broadcast_to(column, (side, side, 3))


def _shade(colour, factor: float) -> tuple[int, int, int]:
    return tuple(int(np.clip(c * factor, 0, 255)) for c in colour)


class FaceDomain(Domain):
    """A talking, blinking, head-turning face; subclasses choose the look."""

    def sample_content(self, rng: np.random.Generator) -> dict:
        raise NotImplementedError

    def background(self, content: dict, side: int) -> np.ndarray:
        raise NotImplementedError

    def draw_body(self, draw: ImageDraw.ImageDraw, content: dict, pose: FacePose, side: int) -> None:
        raise NotImplementedError

    def draw_head(self, draw: ImageDraw.ImageDraw, content: dict, pose: FacePose, side: int) -> None:
        raise NotImplementedError

    def render(self, rng: np.random.Generator, n_frames: int, size: int) -> RenderedVideo:
        content = self.sample_content(rng)
        motion = face_motion(rng, n_frames)
        side = size * SUPERSAMPLE
        background = Image.fromarray(self.background(content, side).astype(np.uint8))
        frames = np.empty((n_frames, size, size, 3), np.uint8)
        for t in range(n_frames):
            factors = {name: float(values[t]) for name, values in motion.items()}
            pose = FacePose.layout(side, content["head_width"], content["head_height"], factors)
            canvas = background.copy()
            self.draw_body(ImageDraw.Draw(canvas), content, pose, side)
            head = Image.new("RGBA", (side, side), (0, 0, 0, 0))
            self.draw_head(ImageDraw.Draw(head), content, pose, side)
            head = head.rotate(factors["roll"], resample=Image.BICUBIC, center=(pose.cx, pose.cy + pose.ry * 0.6))
            canvas.paste(head, (0, 0), head)
            frames[t] = np.asarray(canvas.resize((size, size), Image.LANCZOS))
        return RenderedVideo(frames, content, motion)


SKIN = [(255, 222, 196), (241, 194, 160), (224, 172, 125), (198, 134, 90), (141, 85, 54), (255, 205, 178)]
HAIR = [(40, 30, 25), (90, 56, 37), (180, 120, 60), (230, 200, 120), (160, 50, 30), (120, 120, 130),
        (70, 40, 110)]
IRIS = [(70, 110, 200), (60, 140, 80), (110, 70, 40), (40, 40, 40), (90, 160, 170)]
PASTEL = [(189, 224, 254), (255, 214, 165), (202, 255, 191), (255, 198, 255), (253, 255, 182),
          (220, 210, 255)]
SHIRT = [(220, 60, 60), (60, 120, 220), (60, 170, 90), (240, 180, 40), (150, 80, 200), (240, 240, 240)]


class CartoonFaces(FaceDomain):
    """(a) Cartoon faces on pastel backgrounds that talk, blink and turn their heads."""

    name = "faces"
    description = "cartoon faces that talk, blink and turn their heads (articulated motion)"

    def sample_content(self, rng: np.random.Generator) -> dict:
        pick = lambda palette: palette[int(rng.integers(len(palette)))]  # noqa: E731
        return {"skin": pick(SKIN), "hair": pick(HAIR), "iris": pick(IRIS), "background": pick(PASTEL),
                "shirt": pick(SHIRT), "hair_style": int(rng.integers(3)),  # 0 short, 1 long, 2 bun
                "blush": bool(rng.random() < 0.5), "head_width": float(rng.uniform(0.9, 1.1)),
                "head_height": float(rng.uniform(0.92, 1.08))}

    def background(self, content: dict, side: int) -> np.ndarray:
        top = np.array(content["background"], float)
        return _vertical_gradient(side, top, top * 0.85)

    def draw_body(self, draw, content, pose, side) -> None:
        x, w = pose.cx, pose.rx * 1.7
        draw.ellipse([x - w, side * 0.9, x + w, side * 1.4], fill=tuple(content["shirt"]))
        draw.rectangle([x - pose.rx * 0.3, pose.cy + pose.ry * 0.7, x + pose.rx * 0.3, side * 0.95],
                       fill=_shade(content["skin"], 0.9))

    def draw_head(self, draw, content, pose, side) -> None:
        p, skin, hair = pose, tuple(content["skin"]), tuple(content["hair"])
        line = max(1, side // 100)
        dark = (60, 40, 35)
        if content["hair_style"] == 1:  # long hair falls behind the head
            draw.rounded_rectangle([p.cx - p.rx * 1.15, p.cy - p.ry * 1.05, p.cx + p.rx * 1.15, p.cy + p.ry * 1.05],
                                   radius=p.rx * 0.6, fill=hair)
        if content["hair_style"] == 2:
            _ellipse(draw, p.cx + p.yaw * p.rx * 0.15, p.cy - p.ry * 1.1, p.rx * 0.4, p.ry * 0.3, fill=hair)
        for ex, scale in zip(p.ear_x, p.ear_scale):
            if scale > 0:
                _ellipse(draw, ex, p.cy, p.rx * 0.16 * scale, p.ry * 0.2, fill=_shade(skin, 0.93), outline=dark,
                         width=line)
        _ellipse(draw, p.cx, p.cy, p.rx, p.ry, fill=skin, outline=dark, width=line)
        hx = p.cx + p.yaw * p.rx * 0.12
        draw.chord([hx - p.rx * 1.04, p.cy - p.ry * 1.06, hx + p.rx * 1.04, p.cy + p.ry * 0.1], 180, 360, fill=hair)
        for ex, scale in zip(p.eye_x, p.eye_scale):
            ew, eh = p.rx * 0.17 * scale, p.ry * 0.12
            draw.line([ex - ew, p.eye_y - eh * 2.0, ex + ew, p.eye_y - eh * 2.3], fill=_shade(hair, 0.7),
                      width=line * 3)
            if p.eye_open < 0.15:  # shut: a lid line
                draw.line([ex - ew, p.eye_y, ex + ew, p.eye_y], fill=dark, width=line * 2)
                continue
            open_h = eh * p.eye_open
            _ellipse(draw, ex, p.eye_y, ew, open_h, fill=(255, 255, 255), outline=dark, width=line)
            ir = min(ew, eh) * 0.65
            ix = ex + p.yaw * ew * 0.3
            _ellipse(draw, ix, p.eye_y, ir * scale, min(ir, open_h), fill=tuple(content["iris"]))
            _ellipse(draw, ix, p.eye_y, ir * scale * 0.45, min(ir * 0.45, open_h), fill=(10, 10, 10))
        nx, ny = p.nose
        _ellipse(draw, nx, ny, p.rx * 0.07, p.ry * 0.05, fill=_shade(skin, 0.8))
        if content["blush"]:
            for ex, scale in zip(p.eye_x, p.eye_scale):
                _ellipse(draw, ex, p.eye_y + p.ry * 0.32, p.rx * 0.12 * scale, p.ry * 0.06, fill=(240, 150, 150))
        mx, my = p.mouth
        mw = p.rx * 0.33 * p.mouth_scale
        mh = p.ry * (0.02 + 0.2 * p.mouth_open)
        _ellipse(draw, mx, my, mw, mh, fill=(120, 20, 30), outline=dark, width=line)
        if p.mouth_open > 0.3:
            draw.chord([mx - mw * 0.8, my - mh, mx + mw * 0.8, my + mh * 0.2], 180, 360, fill=(250, 250, 250))
            _ellipse(draw, mx, my + mh * 0.55, mw * 0.5, mh * 0.35, fill=(230, 100, 110))


METAL = [(190, 195, 205), (210, 170, 80), (200, 70, 60), (70, 110, 190), (120, 170, 120), (150, 150, 160)]
GLOW = [(0, 255, 255), (255, 60, 60), (120, 255, 60), (255, 190, 0), (255, 80, 255)]
NIGHT = [(20, 24, 48), (10, 40, 40), (40, 16, 48), (30, 30, 30), (12, 28, 60)]


class RobotHeads(FaceDomain):
    """(b) Robot heads: metal boxes with glowing eyes and an LED mouth on dark grid backgrounds."""

    name = "robots"
    description = "robot heads with glowing eyes on dark grids: a face-like domain with a different look"

    def sample_content(self, rng: np.random.Generator) -> dict:
        pick = lambda palette: palette[int(rng.integers(len(palette)))]  # noqa: E731
        return {"metal": pick(METAL), "glow": pick(GLOW), "background": pick(NIGHT),
                "antenna": bool(rng.random() < 0.7), "bars": int(rng.integers(3, 7)),
                "head_width": float(rng.uniform(0.95, 1.15)), "head_height": float(rng.uniform(0.85, 1.0))}

    def background(self, content: dict, side: int) -> np.ndarray:
        base = np.array(content["background"], float)
        image = _vertical_gradient(side, base * 1.6, base * 0.6).copy()
        cell = side // 8
        grid = np.zeros(side, bool)
        grid[::cell] = True
        grid[1::cell] = True
        lines = grid[:, None] | grid[None, :]
        image[lines] = np.minimum(image[lines] + 45, 255)
        return image

    def draw_body(self, draw, content, pose, side) -> None:
        metal = _shade(content["metal"], 0.7)
        x = pose.cx
        draw.polygon([(x - pose.rx * 1.6, side), (x - pose.rx * 1.1, side * 0.88), (x + pose.rx * 1.1, side * 0.88),
                      (x + pose.rx * 1.6, side)], fill=metal)
        draw.rectangle([x - pose.rx * 0.25, pose.cy + pose.ry * 0.8, x + pose.rx * 0.25, side * 0.9],
                       fill=_shade(content["metal"], 0.5))

    def draw_head(self, draw, content, pose, side) -> None:
        p, metal, glow = pose, tuple(content["metal"]), tuple(content["glow"])
        line = max(1, side // 90)
        outline = _shade(metal, 0.45)
        top = p.cy - p.ry * 0.95
        if content["antenna"]:
            ax = p.cx + p.yaw * p.rx * 0.3
            draw.line([ax, top, ax, top - p.ry * 0.35], fill=outline, width=line * 2)
            _ellipse(draw, ax, top - p.ry * 0.38, p.rx * 0.1, p.rx * 0.1, fill=glow)
        for ex, scale in zip(p.ear_x, p.ear_scale):
            if scale > 0:
                draw.rectangle([ex - p.rx * 0.14 * scale, p.cy - p.ry * 0.25, ex + p.rx * 0.14 * scale,
                                p.cy + p.ry * 0.25], fill=_shade(metal, 0.75), outline=outline, width=line)
        box = [p.cx - p.rx, top, p.cx + p.rx, p.cy + p.ry * 0.95]
        draw.rounded_rectangle(box, radius=p.rx * 0.22, fill=metal, outline=outline, width=line * 2)
        # specular strip that slides with the turn
        sx = p.cx - p.rx * 0.7 - p.yaw * p.rx * 0.2
        draw.rounded_rectangle([sx, top + p.ry * 0.1, sx + p.rx * 0.12, p.cy + p.ry * 0.5], radius=p.rx * 0.05,
                               fill=_shade(metal, 1.25))
        visor = (15, 15, 22)
        draw.rounded_rectangle([p.fx - p.rx * 0.78, p.eye_y - p.ry * 0.24, p.fx + p.rx * 0.78, p.eye_y + p.ry * 0.24],
                               radius=p.ry * 0.12, fill=visor)
        for ex, scale in zip(p.eye_x, p.eye_scale):
            er = p.ry * 0.17
            _ellipse(draw, ex, p.eye_y, er * scale, er, fill=glow)
            _ellipse(draw, ex, p.eye_y, er * scale * 0.45, er * 0.45, fill=(255, 255, 255))
            shut = 1.0 - p.eye_open
            if shut > 0.02:  # shutter comes down from the top of the visor
                draw.rectangle([ex - er * scale - 1, p.eye_y - er - 1, ex + er * scale + 1,
                                p.eye_y - er + 2 * er * shut], fill=visor)
        mx, my = p.mouth
        mw = p.rx * 0.45 * p.mouth_scale
        mh = p.ry * (0.05 + 0.2 * p.mouth_open)
        draw.rectangle([mx - mw, my - mh, mx + mw, my + mh], fill=visor, outline=outline, width=line)
        bars = content["bars"]
        lit = _shade(glow, 0.35 + 0.65 * p.mouth_open)
        step = 2 * mw / bars
        for i in range(bars):
            x0 = mx - mw + i * step + step * 0.2
            draw.rectangle([x0, my - mh * 0.7, x0 + step * 0.6, my + mh * 0.7], fill=lit)
