import imageio.v3 as iio
import numpy as np
import pytest
import torch

from mocohd_cli.infra.errors import MocohdError
from mocohd_cli.models.generation import interpolate_midpoints
from mocohd_cli.data.video import save_video, to_uint8, video_grid, write_videos


def moving_square(t=8, size=32):
    frames = -torch.ones(t, 3, size, size)
    for i in range(t):
        frames[i, 0, 4:12, 2 + 2 * i: 10 + 2 * i] = 1.0
    return frames


def test_to_uint8_maps_range():
    pixels = to_uint8(torch.tensor([-1.0, 0.0, 1.0, 2.0]).view(1, 1, 1, 4).expand(1, 3, 1, 4))
    assert pixels.dtype == np.uint8 and pixels[0, 0, :, 0].tolist() == [0, 128, 255, 255]


def test_mp4_is_playable_and_deterministic(tmp_path):
    frames = moving_square(t=10, size=33)  # odd size: padded to even for H.264
    a = save_video(frames, tmp_path / "a.mp4", fps=8)
    b = save_video(frames, tmp_path / "b.mp4", fps=8)
    assert a.read_bytes() == b.read_bytes()
    decoded = iio.imread(a, plugin="FFMPEG")
    assert decoded.shape == (10, 34, 34, 3)
    # lossy, but the red square must be where we drew it
    assert decoded[5, 8, 10 + 6, 0] > 200 and decoded[5, 8, 30, 0] < 60


def test_gif_and_png_frames(tmp_path):
    frames = moving_square(t=6)
    gif = save_video(frames, tmp_path / "v.gif", fps=4)
    assert iio.imread(gif, index=None).shape[0] == 6
    folder = save_video(frames, tmp_path / "v_png", fps=4)
    pngs = sorted(folder.glob("*.png"))
    assert len(pngs) == 6
    assert np.array_equal(iio.imread(pngs[3]), to_uint8(frames)[3])


def test_grid_and_write_videos(tmp_path):
    videos = torch.stack([moving_square(t=4, size=16)] * 5)
    grid = video_grid(videos, padding=2)
    assert grid.shape == (4, 3, 2 + 2 * 18, 2 + 3 * 18)
    assert torch.equal(grid[:, :, 2:18, 2:18], videos[0])
    files = write_videos(videos, tmp_path, fmt="gif")
    assert len(files) == 5 and all(f.exists() for f in files)
    assert len(write_videos(videos, tmp_path / "g", fmt="mp4", grid=True)) == 1
    with pytest.raises(MocohdError):
        write_videos(videos, tmp_path, fmt="avi")


def test_interpolate_midpoints():
    lat = torch.arange(3.0).view(1, 3, 1)
    assert interpolate_midpoints(lat).flatten().tolist() == [0, 0.5, 1, 1.5, 2]


def test_written_files_get_normal_permissions(tmp_path):
    import os

    umask = os.umask(0o022)
    try:
        path = save_video(moving_square(t=2, size=8), tmp_path / "v.gif", fps=2)
    finally:
        os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("fps, fmt", [(0, "gif"), (0, "mp4"), (-1, "mp4"), (float("nan"), "gif"), (float("inf"), "mp4"),
                                      (1e-6, "mp4"), (5000, "mp4"), (60, "gif")])
def test_writers_refuse_frame_rates_they_cannot_honour(fps, fmt, tmp_path):
    # fps 0 was a ZeroDivisionError in the gif writer; 1e-6 an mp4 without frames (ffmpeg only logs it)
    with pytest.raises(MocohdError, match="--fps"):
        save_video(moving_square(t=3, size=8), tmp_path / f"v.{fmt}", fps=fps)
    with pytest.raises(MocohdError, match="--fps"):
        write_videos(moving_square(t=3, size=8)[None], tmp_path / "w", fps=fps, fmt=fmt)
    assert list(tmp_path.iterdir()) == []


def test_frames_that_are_not_finite_are_never_written(tmp_path):
    frames = moving_square(t=3, size=8)
    frames[1, 0, 2, 2] = float("nan")
    with pytest.raises(MocohdError, match="NaN"):
        save_video(frames, tmp_path / "v.gif", fps=4)
    assert list(tmp_path.iterdir()) == []


def test_png_folder_is_replaced_whole(tmp_path):
    save_video(moving_square(t=6, size=8), tmp_path / "v", fps=4)
    folder = save_video(moving_square(t=3, size=8), tmp_path / "v", fps=4)
    assert sorted(p.name for p in folder.iterdir()) == [f"frame_{t:04d}.png" for t in range(3)]  # no stale frames
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v"]


def test_grid_canvas_filled_batch_by_batch_equals_video_grid():
    from mocohd_cli.data.video import GridCanvas

    videos = torch.rand(5, 2, 3, 6, 6) * 2 - 1
    canvas = GridCanvas(5, (2, 3, 6, 6), nrow=2, padding=1)
    canvas.paste(0, videos[:3])
    canvas.paste(3, videos[3:])
    assert torch.equal(canvas.frames, video_grid(videos, nrow=2, padding=1))
    assert canvas.frames.numel() * 4 == GridCanvas.nbytes(5, (2, 3, 6, 6), nrow=2, padding=1)
