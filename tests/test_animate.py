"""`mocohd animate` end to end on the tiny backbone, `mocohd train-encoder` through the CLI, and the
input images: what is converted and what is refused (mocohd_cli/data/images.py)."""
from __future__ import annotations

import struct
import zlib

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from mocohd_cli.cli import app
from mocohd_cli.data.images import read_image
from mocohd_cli.infra.errors import MocohdError
from mocohd_cli.models.motion import MotionGenerator

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


# -- input images ----------------------------------------------------------------------------------
def png16(path, pixels: np.ndarray) -> None:
    """A 16-bit PNG (grey [H, W] or RGB [H, W, 3]) written by hand: Pillow cannot write 16-bit RGB."""
    h, w = pixels.shape[:2]
    colour = 2 if pixels.ndim == 3 else 0
    raw = b"".join(b"\x00" + pixels[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, colour, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def to_uint8(pixels: torch.Tensor) -> np.ndarray:
    """[3, S, S] in [-1, 1] -> [S, S, 3] uint8, as read_image's input was."""
    return ((pixels.permute(1, 2, 0).numpy() + 1) * 127.5).round().astype(np.uint8)


def test_rgb_at_the_right_size_is_read_as_it_is(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    image = read_image(tmp_path / "a.png", 32)
    assert image.notes == [] and image.pixels.shape == (3, 32, 32)
    assert np.array_equal(to_uint8(image.pixels), pixels)


@pytest.mark.parametrize("case", ["grey", "rgba", "grey16", "rgb16", "palette", "cmyk", "wide", "big", "animated"])
def test_other_images_are_converted_and_say_how(case, tmp_path):
    path = tmp_path / f"{case}.png"
    expected = None  # the pixels read_image must give, [32, 32, 3] uint8
    if case == "grey":
        Image.fromarray(np.full((32, 32), 77, np.uint8)).save(path)
        note, expected = "grey -> RGB", np.full((32, 32, 3), 77, np.uint8)
    elif case == "rgba":
        rgba = np.zeros((32, 32, 4), np.uint8)
        rgba[..., 0], rgba[..., 3] = 200, 255
        rgba[:8, :, 3] = 0  # a quarter transparent
        Image.fromarray(rgba).save(path)
        note, expected = "alpha dropped (25% of the pixels", np.broadcast_to([200, 0, 0], (32, 32, 3))
    elif case == "grey16":
        png16(path, np.full((32, 32), 40000, np.uint16))
        note, expected = "16-bit grey -> 8-bit RGB", np.full((32, 32, 3), round(40000 / 257), np.uint8)
    elif case == "rgb16":
        pixels = np.zeros((32, 32, 3), np.uint16)
        pixels[..., 0], pixels[..., 1] = 65535, 32896
        png16(path, pixels)
        note, expected = None, np.broadcast_to([255, 128, 0], (32, 32, 3))  # Pillow reads it as 8-bit RGB
    elif case == "palette":
        Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).convert("P").save(path)
        note = "P -> RGB"
    elif case == "cmyk":
        path = tmp_path / "cmyk.jpg"
        Image.new("CMYK", (32, 32), (0, 255, 255, 0)).save(path)
        note = "CMYK -> RGB"
    elif case == "wide":
        wide = np.zeros((32, 64, 3), np.uint8)
        wide[:, 16:48] = 255  # the centre square is white
        Image.fromarray(wide).save(path)
        note, expected = "centre-cropped 64x32 -> 32x32", np.full((32, 32, 3), 255, np.uint8)
    elif case == "big":
        Image.fromarray(np.full((100, 100, 3), 30, np.uint8)).save(path)
        note, expected = "resized 100x100 -> 32x32", np.full((32, 32, 3), 30, np.uint8)
    elif case == "animated":
        path = tmp_path / "animated.gif"
        frames = [Image.fromarray(np.full((32, 32, 3), v, np.uint8)) for v in (0, 255)]
        frames[0].save(path, save_all=True, append_images=frames[1:])
        note, expected = "first of its 2 frames", np.zeros((32, 32, 3), np.uint8)
    image = read_image(path, 32)
    assert image.pixels.shape == (3, 32, 32) and image.pixels.dtype == torch.float32
    if note is not None:
        assert any(n.startswith(note) for n in image.notes), image.notes
    if expected is not None:
        assert np.abs(to_uint8(image.pixels).astype(int) - expected).max() <= 1


@pytest.mark.parametrize("case", ["missing", "folder", "text", "truncated", "float"])
def test_bad_images_give_one_clear_error(case, tmp_path):
    path = tmp_path / f"{case}.png"
    if case == "folder":
        path.mkdir()
    elif case == "text":
        path.write_text("not an image")
    elif case == "truncated":
        Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(path)
        path.write_bytes(path.read_bytes()[:60])
    elif case == "float":
        path = tmp_path / "float.tif"
        Image.fromarray(np.zeros((8, 8), np.float32)).save(path)
    with pytest.raises(MocohdError) as error:
        read_image(path, 32)
    assert str(path) in str(error.value) and error.value.fix


# -- the command ---------------------------------------------------------------------------------
@pytest.fixture
def motion_file(tiny_stylegan2_checkpoint, tmp_path):
    torch.manual_seed(0)
    motion = MotionGenerator(32, h_dim=16, n_pca=8, w_residual=0.5)
    return motion.save(tmp_path / "motion.safetensors", backbone="stylegan2", fps=5,
                       backbone_checkpoint=str(tiny_stylegan2_checkpoint))


@pytest.fixture
def own_image(tiny_stylegan2, tmp_path):
    """A PNG the tiny backbone made (stored noise) from a known latent."""
    from mocohd_cli.data.video import save_image

    w = tiny_stylegan2.sample_latent(1, rng=torch.Generator().manual_seed(3))
    with torch.no_grad():
        return save_image(tiny_stylegan2.synthesize(w[:, None], noise="const")[0, 0], tmp_path / "face.png")


def test_animate_end_to_end(motion_file, own_image, tiny_stylegan2_checkpoint, tmp_path):
    out = tmp_path / "out"
    grey = tmp_path / "grey.png"
    Image.open(own_image).convert("L").resize((50, 50)).save(grey)
    result = run("animate", own_image, grey, "--motion", motion_file, "--frames", 5, "--steps", 200,
                 "--candidates", 64, "--save-latents", "--format", "png", "--out", out)
    assert result.exit_code == 0, result.output
    flat = " ".join(result.output.split())  # rich wraps long paths, anywhere
    assert "grey -> RGB" in flat and "resized 50x50 -> 32x32" in flat
    psnr = float(flat.split("PSNR ")[1].split(" dB")[0])
    assert psnr > 30, result.output  # the backbone's own image, inverted
    frames = sorted((out / "face").glob("*.png"))
    assert len(frames) == 5 and iio.imread(frames[0]).shape == (32, 32, 3)
    # frame 0 is the inverted frame, and the video moves
    assert np.array_equal(iio.imread(frames[0]), iio.imread(out / "face_inverted.png"))
    assert not np.array_equal(iio.imread(frames[0]), iio.imread(frames[-1]))
    compare = iio.imread(out / "face_compare.png")
    assert compare.shape == (36, 70, 3)  # input | inverted, 2 px padding
    assert np.array_equal(compare[2:34, 2:34], iio.imread(own_image))
    assert (out / "grey_inverted.png").is_file()
    # the latents replay exactly through `mocohd sample --latents`
    replay = run("sample", "--latents", out / "latents.npz", "--checkpoint", tiny_stylegan2_checkpoint,
                 "--format", "png", "--out", tmp_path / "replay")
    assert replay.exit_code == 0, replay.output
    replayed = sorted((tmp_path / "replay" / "video_0000").glob("*.png"))
    assert [iio.imread(f).tobytes() for f in replayed] == [iio.imread(f).tobytes() for f in frames]


def test_animate_mp4_is_reproducible(motion_file, own_image, tmp_path):
    args = [own_image, "--motion", motion_file, "--frames", 4, "--steps", 5, "--candidates", 4, "--noise", "random"]
    first, second = run("animate", *args, "--out", tmp_path / "a"), run("animate", *args, "--out", tmp_path / "b")
    assert first.exit_code == 0 and second.exit_code == 0, first.output
    assert iio.imread(tmp_path / "a" / "face.mp4", plugin="FFMPEG").shape == (4, 32, 32, 3)
    assert (tmp_path / "a" / "face.mp4").read_bytes() == (tmp_path / "b" / "face.mp4").read_bytes()


def test_animate_with_an_encoder_and_bad_inputs(motion_file, own_image, tiny_stylegan2_checkpoint, tmp_path):
    encoder = tmp_path / "encoder.safetensors"
    trained = run("train-encoder", "--checkpoint", tiny_stylegan2_checkpoint, "--out", encoder, "--arch", "resnet10t",
                  "--steps", 2, "--batch-size", 2, "--log-every", 1)
    assert trained.exit_code == 0, trained.output
    assert "step 2: latent" in trained.output and encoder.is_file()
    result = run("animate", own_image, "--motion", motion_file, "--encoder", encoder, "--frames", 2, "--steps", 3,
                 "--out", tmp_path / "e")
    assert result.exit_code == 0, result.output
    # an encoder of other backbone weights is refused, naming the file and the fix
    from conftest import make_tiny_stylegan2

    other = tmp_path / "other.pt"
    torch.save({"g_ema": make_tiny_stylegan2(seed=5).state_dict()}, other)
    refused = run("animate", own_image, "--motion", motion_file, "--checkpoint", other, "--encoder", encoder,
                  "--out", tmp_path / "r")
    assert refused.exit_code == 2 and "encoder.safetensors" in refused.output
    assert "mocohd train-encoder --checkpoint" in refused.output and "Traceback" not in refused.output
    junk = tmp_path / "junk.png"
    junk.write_text("hello")
    bad = run("animate", own_image, junk, "--motion", motion_file, "--out", tmp_path / "j")
    assert bad.exit_code == 2 and "junk.png" in bad.output and "fix:" in bad.output
    assert not (tmp_path / "j" / "face.mp4").exists()  # every image is read before any work


# -- review fixes ----------------------------------------------------------------------------------
def test_images_never_share_output_stems(motion_file, own_image, tmp_path):
    from mocohd_cli.workflows.animate import _unique_stems

    assert _unique_stems([tmp_path / "a.png", tmp_path / "d" / "a.png", tmp_path / "a_2.png"]) == ["a", "a_2", "a_2_2"]
    assert _unique_stems([tmp_path / "a_2.png", tmp_path / "a.png", tmp_path / "d" / "a.png"]) == ["a_2", "a", "a_3"]
    (tmp_path / "d").mkdir()
    images = [tmp_path / "a.png", tmp_path / "d" / "a.png", tmp_path / "a_2.png"]
    for value, path in zip((0, 128, 255), images):
        Image.fromarray(np.full((32, 32, 3), value, np.uint8)).save(path)
    result = run("animate", *images, "--motion", motion_file, "--frames", 2, "--steps", 0, "--candidates", 0,
                 "--format", "gif", "--out", tmp_path / "o")
    assert result.exit_code == 0, result.output
    compares = [iio.imread(tmp_path / "o" / f"{stem}_compare.png") for stem in ("a", "a_2", "a_2_2")]
    for value, compare in zip((0, 128, 255), compares):  # each image's own files: its input on the left
        assert compare[2:34, 2:34].min() == compare[2:34, 2:34].max() == value


def test_any_integer_seed_works(motion_file, own_image, tiny_stylegan2_checkpoint, tmp_path):
    """Seeds are hashed (models/generation.py stream_seed), never handed to torch as they are."""
    for seed in (10 ** 30, -(10 ** 30)):
        result = run("animate", own_image, "--motion", motion_file, "--frames", 2, "--steps", 1, "--candidates", 3,
                     "--seed", seed, "--format", "gif", "--out", tmp_path / "a")
        assert result.exit_code == 0, result.output
    trained = run("train-encoder", "--checkpoint", tiny_stylegan2_checkpoint, "--out", tmp_path / "e.safetensors",
                  "--arch", "resnet10t", "--steps", 1, "--batch-size", 2, "--seed", 10 ** 30)
    assert trained.exit_code == 0, trained.output
    made = run("sample", "--motion", motion_file, "-n", 1, "--frames", 2, "--format", "png", "--out", tmp_path / "real")
    assert made.exit_code == 0, made.output
    # eval's seed is offset for its real videos before numpy and torch see it: the largest it takes
    scored = run("eval", "--metric", "prediction", "--real", tmp_path / "real", "--motion", motion_file, "--frames", 2,
                 "--num-videos", 1, "--inversion-steps", 0, "--seed", 2 ** 62 - 1)
    assert scored.exit_code == 0, scored.output


def test_class_on_an_unconditional_backbone_is_refused(motion_file, own_image, tmp_path):
    result = run("animate", own_image, "--motion", motion_file, "--class", 3, "--out", tmp_path / "o")
    assert result.exit_code == 2, result.output
    assert "unconditional" in result.output and "--class" in result.output
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_candidates_are_bounded_and_drawn_in_chunks(tiny_stylegan2, own_image, motion_file, tmp_path, monkeypatch):
    from mocohd_cli.data.images import read_image
    from mocohd_cli.models.generation import stream_generator
    from mocohd_cli.models.inversion import MAX_CANDIDATES, latent_statistics, render_fixed_noise, search_start

    refused = run("animate", own_image, "--motion", motion_file, "--candidates", MAX_CANDIDATES + 1,
                  "--out", tmp_path / "o")
    assert refused.exit_code == 2 and "--candidates" in refused.output and "Traceback" not in refused.output
    targets = torch.stack([read_image(own_image, 32).pixels, -read_image(own_image, 32).pixels])
    stats = latent_statistics(tiny_stylegan2)
    drawn, sample_latent = [], type(tiny_stylegan2).sample_latent

    def counted(self, n, *, rng=None):
        drawn.append(n)
        return sample_latent(self, n, rng=rng)

    monkeypatch.setattr(type(tiny_stylegan2), "sample_latent", counted)
    best = search_start(tiny_stylegan2, targets, stats=stats, candidates=50, seed=4, batch_size=16)
    assert drawn == [16, 16, 16, 2]  # never the whole pool at once
    # the same choice as comparing the whole pool at once
    rng = stream_generator(4, 0, "candidates")
    pool = torch.cat([stats.mean[None]] + [sample_latent(tiny_stylegan2, n, rng=rng) for n in (16, 16, 16, 2)])
    with torch.no_grad():
        images = render_fixed_noise(tiny_stylegan2, pool[:, None], condition=None, noise="const")[:, 0]
    assert torch.equal(best, pool[torch.cdist(targets.flatten(1), images.flatten(1)).argmin(1)])
