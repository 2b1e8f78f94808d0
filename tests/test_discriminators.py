"""Multi-scale PatchGAN discriminators: architecture facts from docs/method.md."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from mocohd_cli.models.discriminators import MultiScaleDiscriminator, image_discriminator, video_discriminator


def test_video_discriminator_layers_and_outputs():
    disc = video_discriminator(6, n_frames=4, ndf=8)
    outputs = disc(torch.randn(2, 6, 3, 16, 16))
    assert len(outputs) == 2  # num_D 2
    for scale in outputs:
        assert [o.shape[1] for o in scale] == [8, 16, 32, 64, 1]
        assert all(o.shape[0] == 2 for o in scale)
    assert outputs[1][-1].shape[-1] < outputs[0][-1].shape[-1]  # the second scale sees a pooled input


def test_default_widths_kernels_strides_and_norms():
    disc = video_discriminator(6, n_frames=16)
    convs = [m for m in disc.scales[0].modules() if isinstance(m, nn.Conv3d)]
    assert [c.out_channels for c in convs] == [64, 128, 256, 512, 1]
    assert [c.stride for c in convs] == [(2, 2, 2)] * 3 + [(1, 1, 1)] * 2
    assert all(c.kernel_size == (4, 4, 4) and c.padding == (2, 2, 2) for c in convs)
    norms = [m for m in disc.scales[0].modules() if isinstance(m, nn.InstanceNorm3d)]
    assert len(norms) == 3 and all(n.track_running_stats and not n.affine for n in norms)
    assert isinstance(disc.scales[0].blocks[0][1], nn.LeakyReLU) and disc.scales[0].blocks[0][1].negative_slope == 0.2
    weights = torch.cat([c.weight.flatten() for c in convs])
    assert abs(weights.std().item() - 0.02) < 0.001 and abs(weights.mean().item()) < 0.001


@pytest.mark.parametrize("n_frames, expected_t", [(16, 8), (24, 4)])
def test_3d_pooling_keeps_time_up_to_16_frames(n_frames, expected_t):
    disc = video_discriminator(3, n_frames=n_frames, ndf=4)
    pooled = disc.downsample(torch.zeros(1, 3, 8, 16, 16))
    assert pooled.shape[2] == expected_t and pooled.shape[-1] == 8
    assert disc.downsample.count_include_pad is False


def test_image_discriminator_on_pairs():
    disc = image_discriminator(6, ndf=8)
    assert isinstance(disc, MultiScaleDiscriminator) and disc.dims == 2
    outputs = disc(torch.randn(3, 6, 32, 32))
    assert len(outputs) == 2 and outputs[0][-1].shape[:2] == (3, 1)


def test_discriminator_is_batch_independent():
    """Instance norm: each sample is judged alone, so a batch equals its items one by one."""
    disc = video_discriminator(6, n_frames=4, ndf=4)
    x = torch.randn(3, 6, 3, 16, 16)
    together = disc(x)[0][-1]
    alone = torch.cat([disc(x[i:i + 1])[0][-1] for i in range(3)])
    assert torch.allclose(together, alone, atol=1e-5)
