"""Mixed precision (docs/precision.md): under autocast only the large convolutions of the top
resolutions run in bf16/fp16; styles, demodulation, noise, the activations between layers, toRGB,
the RGB skip, the losses and the gradient penalty stay fp32."""
from __future__ import annotations

import pytest
import torch
from conftest import make_tiny_stylegan2

from mocohd_cli.infra.device import autocast
from mocohd_cli.infra.errors import MocohdError
from mocohd_cli.models.losses import ra_lsgan_d_loss, ra_lsgan_g_loss
from mocohd_plugins.stylegan2 import StyleGAN2Generator
from mocohd_plugins.stylegan2.generator import (LOW_PRECISION_MIN_CHANNELS, LOW_PRECISION_MIN_RESOLUTION,
                                              PRECISION_POLICIES)
from mocohd_plugins.stylegan2.modulated import StyledConv, ToRGB

# 64 px, 128 channels everywhere: wide enough for the default policy to use bf16 at 64 px
WIDE = {"size": 64, "style_dim": 64, "channels": {4: 128, 8: 128, 16: 128, 32: 128, 64: 128}}


@pytest.fixture(scope="module")
def wide():
    model = make_tiny_stylegan2(seed=7, **WIDE).freeze()
    with torch.no_grad():  # frames of a trained generator's scale (about [-1, 1]), not a fresh init's
        for module in model.modules():
            if isinstance(module, ToRGB):
                module.conv.weight.mul_(0.3)
    return model


def render(model, w, precision="fp32", dtype=torch.bfloat16):
    with torch.no_grad(), torch.autocast("cpu", dtype=dtype, enabled=precision != "fp32"):
        return model.synthesize(w[:, None], noise="const")[:, 0]


def latents(model, n=2, seed=0):
    return model.mapping(torch.randn(n, model.style_dim, generator=torch.Generator().manual_seed(seed))).detach()


def test_policy_marks_only_wide_high_resolution_convolutions():
    channels = {4: 256, 8: 256, 16: 256, 32: 256, 64: 256, 128: 128, 256: 64}
    with torch.device("meta"):  # shapes only: the policy depends on nothing else
        model = StyleGAN2Generator(256, style_dim=32, n_mlp=1, channels=channels)
    marked = [(res, layer.conv.in_channel, layer.conv.out_channel, layer.conv.low_precision)
              for res, layer in model.styled_convs()]
    assert LOW_PRECISION_MIN_RESOLUTION == 64 and LOW_PRECISION_MIN_CHANNELS == 128
    assert marked == [(4, 256, 256, False), (8, 256, 256, False), (8, 256, 256, False), (16, 256, 256, False),
                      (16, 256, 256, False), (32, 256, 256, False), (32, 256, 256, False), (64, 256, 256, True),
                      (64, 256, 256, True), (128, 256, 128, True), (128, 128, 128, True), (256, 128, 64, False),
                      (256, 64, 64, False)]
    model.set_low_precision(min_resolution=0, min_channels=0)
    assert all(layer.conv.low_precision for _, layer in model.styled_convs())
    model.set_low_precision(min_resolution=512)
    assert not any(layer.conv.low_precision for _, layer in model.styled_convs())


def test_only_the_marked_convolutions_leave_fp32(wide):
    """Every layer's output (the activations, the RGB skip) is fp32 under autocast; only the
    marked convolutions compute in bf16."""
    dtypes, conv_dtypes = {}, {}
    hooks = [m.register_forward_hook(lambda m, i, out, name=name: dtypes.__setitem__(name, out.dtype))
             for name, m in wide.named_modules() if isinstance(m, (StyledConv, ToRGB))]
    hooks += [m.conv.register_forward_hook(lambda m, i, out, name=name: conv_dtypes.__setitem__(name, out[0].dtype))
              for name, m in wide.named_modules() if isinstance(m, StyledConv)]
    try:
        render(wide, latents(wide), "bf16")
    finally:
        for hook in hooks:
            hook.remove()
    assert set(dtypes.values()) == {torch.float32}
    expected = {name: torch.bfloat16 if m.conv.low_precision else torch.float32
                for name, m in wide.named_modules() if isinstance(m, StyledConv)}
    assert conv_dtypes == expected
    assert list(expected.values()).count(torch.bfloat16) == 2  # the two 64 px convolutions


def test_bf16_frames_within_1e_2_of_fp32_and_better_than_all_bf16(wide):
    w = latents(wide, 4)
    fp32 = render(wide, w)
    assert 0.3 < fp32.std() < 1.0  # frames at an image's scale
    error = (render(wide, w, "bf16") - fp32).abs().max().item()
    wide.set_low_precision(min_resolution=0, min_channels=0)
    try:
        error_everything = (render(wide, w, "bf16") - fp32).abs().max().item()
    finally:
        wide.set_low_precision()
    assert 0 < error < 1e-2
    assert error < error_everything


def test_fp32_is_unchanged_by_the_policy(wide):
    """Without autocast the policy changes nothing: bit-identical frames."""
    w = latents(wide)
    before = render(wide, w)
    wide.set_low_precision(min_resolution=0, min_channels=0)
    try:
        assert torch.equal(render(wide, w), before)
    finally:
        wide.set_low_precision()


def test_fp16_autocast_runs_the_same_layers_in_fp16(wide):
    """The fp16 path (CUDA's) is the same code: checked here under CPU fp16 autocast."""
    w = latents(wide)
    try:
        fp16 = render(wide, w, "fp16", dtype=torch.float16)
    except RuntimeError as exc:  # a torch build without CPU fp16 convolutions
        pytest.skip(f"no CPU fp16 convolution here: {exc}")
    assert fp16.dtype == torch.float32 and torch.isfinite(fp16).all()
    assert (fp16 - render(wide, w)).abs().max() < 5e-3  # 3 more mantissa bits than bf16


def test_gradients_flow_to_the_latents_under_bf16(wide):
    w = latents(wide).requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        frames = wide.synthesize(w[:, None], noise="const")
    frames.square().mean().backward()
    reference = latents(wide).requires_grad_(True)
    wide.synthesize(reference[:, None], noise="const").square().mean().backward()
    assert frames.dtype == torch.float32
    cosine = torch.nn.functional.cosine_similarity(w.grad.flatten(), reference.grad.flatten(), dim=0)
    assert cosine > 0.99


def test_losses_are_fp32_whatever_the_discriminators_ran_in():
    gen = torch.Generator().manual_seed(0)
    real = [[torch.randn(2, 1, 5, 5, generator=gen)] for _ in range(2)]
    fake = [[torch.randn(2, 1, 5, 5, generator=gen)] for _ in range(2)]
    as_bf16 = lambda outputs: [[o.bfloat16() for o in scale] for scale in outputs]  # noqa: E731
    for loss in (ra_lsgan_d_loss, ra_lsgan_g_loss):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = loss(as_bf16(real), as_bf16(fake))
        rounded = loss([[o.bfloat16().float() for o in s] for s in real], [[o.bfloat16().float() for o in s] for s in fake])
        assert low.dtype == torch.float32
        assert torch.allclose(low, rounded, rtol=1e-6)  # only the inputs were rounded, not the arithmetic


def test_unsupported_precision_pairs_are_refused():
    with pytest.raises(MocohdError, match="fp16 autocast is not supported on the CPU"):
        autocast(torch.device("cpu"), "fp16")
    with pytest.raises(MocohdError, match="unknown precision"):
        autocast(torch.device("cpu"), "fp8")
    with autocast(torch.device("cpu"), "bf16"):
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16


def test_training_policy_puts_every_wide_convolution_in_bf16_and_is_restored():
    channels = {4: 256, 8: 256, 16: 64, 32: 32, 64: 16}
    with torch.device("meta"):
        model = StyleGAN2Generator(64, style_dim=32, n_mlp=1, channels=channels)
    sampling = [layer.conv.low_precision for _, layer in model.styled_convs()]
    with model.precision_policy("training"):
        assert model.low_precision_policy == PRECISION_POLICIES["training"]
        training = [(res, layer.conv.low_precision) for res, layer in model.styled_convs()]
    # from 8 px (4 px is slower in bf16), every conv with 32 channels or more on both sides
    assert training == [(4, False), (8, True), (8, True), (16, True), (16, True), (32, True), (32, True),
                        (64, False), (64, False)]
    assert [layer.conv.low_precision for _, layer in model.styled_convs()] == sampling == [False] * 9


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_trainer_steps_under_the_training_policy(tiny_stylegan2_checkpoint, tiny_videos, tmp_path, precision):
    from mocohd_cli.infra.distributed import init_distributed
    from mocohd_cli.training import TrainConfig
    from mocohd_cli.training.trainer import Trainer

    config = TrainConfig(backbone="stylegan2", checkpoint=str(tiny_stylegan2_checkpoint), data=str(tiny_videos),
                         out=str(tmp_path / "run"), frames=4, time_step=2, video_frame_size=16, batch_size=1, h_dim=8,
                         n_pca=8, d_channels=4, pca_samples=256, workers=0, g_steps=2, precision=precision)
    trainer = Trainer(config, init_distributed("cpu"), progress=False)
    backbone, seen = trainer.backbone, []
    synthesize = backbone.synthesize

    def recording(*args, **kwargs):
        seen.append(dict(backbone.low_precision_policy))
        return synthesize(*args, **kwargs)

    backbone.synthesize = recording
    before = dict(backbone.low_precision_policy)
    trainer.iteration(trainer.dataset[(0, 0)][None])
    # fp32 runs nothing in low precision whatever the policy: it is left alone
    expected = PRECISION_POLICIES["training"] if precision == "bf16" else before
    assert seen == [expected] * 3 and backbone.low_precision_policy == before


def test_video_discriminator_stays_fp32_under_cpu_autocast():
    """bf16 3-D convolutions gave non-finite weight gradients on the CPU (bf16 training diverged):
    the video discriminator runs in fp32 there, the image discriminator under autocast."""
    from mocohd_cli.models.discriminators import image_discriminator, video_discriminator

    video, image = video_discriminator(6, 3, ndf=4), image_discriminator(6, ndf=4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        video_out = video(torch.randn(1, 6, 3, 16, 16, dtype=torch.bfloat16))
        image_out = image(torch.randn(1, 6, 16, 16))
    assert {o.dtype for scale in video_out for o in scale} == {torch.float32}
    assert image_out[0][-1].dtype == torch.bfloat16
