import torch
from torch import nn

from mocohd_cli.models.backbone import ImageGenerator
from mocohd_cli.models.pca import StreamingCovariance, displacement_pca, motion_pca, principal_components


class GaussianLatents(ImageGenerator):
    """A mapping that is a fixed linear map of z: latents are Gaussian with a known covariance."""

    name = "gaussian"
    latent_dim = z_dim = 6
    resolution = 4

    def __init__(self):
        super().__init__()
        self.scales = nn.Parameter(torch.tensor([5.0, 3.0, 2.0, 1.0, 0.5, 0.1]))
        self.rotation = nn.Parameter(torch.linalg.qr(torch.randn(6, 6, generator=torch.Generator().manual_seed(1)))[0])

    def mapping(self, z):
        return (z * self.scales) @ self.rotation.T + 1.0


def test_streaming_covariance_is_exact():
    data = torch.randn(1000, 5, dtype=torch.float64) @ torch.randn(5, 5, dtype=torch.float64)
    stats = StreamingCovariance(5)
    for chunk in data.split(137):
        stats.update(chunk)
    torch.testing.assert_close(stats.covariance(), torch.cov(data.T))
    torch.testing.assert_close(stats.mean(), data.mean(0))


def test_principal_components_are_orthonormal_sorted_and_signed():
    cov = torch.cov((torch.randn(500, 4, dtype=torch.float64) * torch.tensor([4.0, 1, 2, 3])).T)
    comps, stdev = principal_components(cov)
    torch.testing.assert_close(comps @ comps.T, torch.eye(4), atol=1e-5, rtol=0)
    assert torch.all(stdev[:-1] >= stdev[1:])
    pivots = comps.abs().argmax(1)
    assert torch.all(comps.gather(1, pivots[:, None]) > 0)


def test_motion_pca_recovers_known_axes_and_caches(tmp_path):
    backbone = GaussianLatents().freeze()
    backbone.checkpoint_sha256 = "ab" * 32
    comps, stdev = motion_pca(backbone, n_pca=3, n_samples=40_000, batch_size=5000, cache_dir=tmp_path)
    assert comps.shape == (3, 6) and stdev.shape == (3,)
    torch.testing.assert_close(stdev, torch.tensor([5.0, 3.0, 2.0]), rtol=0.03, atol=0)
    for k in range(3):  # each component is (up to sign) a column of the rotation
        assert abs(torch.dot(comps[k], backbone.rotation[:, k].detach())) > 0.99
    cached = list(tmp_path.glob("*.safetensors"))
    assert len(cached) == 1
    with torch.no_grad():
        backbone.scales.mul_(0)  # a cache hit must not sample again
    comps2, stdev2 = motion_pca(backbone, n_pca=3, n_samples=40_000, batch_size=5000, cache_dir=tmp_path)
    assert torch.equal(comps, comps2) and torch.equal(stdev, stdev2)


def test_displacement_pca_follows_the_walks_not_the_starting_points():
    # 200 walks of 9 frames in 6-D: the starting points spread widely along axis 0 (content), the walks move
    # along a rotated pair of directions with spreads 3 and 1 per step (motion), and nowhere else
    gen = torch.Generator().manual_seed(0)
    rotation, _ = torch.linalg.qr(torch.randn(6, 6, generator=gen))
    start = torch.zeros(200, 1, 6)
    start[:, 0, 0] = 50 * torch.randn(200, generator=gen)
    steps = torch.randn(200, 8, 2, generator=gen) * torch.tensor([3.0, 1.0])
    walks = torch.cat([start, start + steps.cumsum(1) @ rotation[:, 1:3].T], 1)
    components, stdev = displacement_pca(walks)
    assert components.shape == (6, 6) and stdev.shape == (6,)
    for k in range(2):  # the walks' directions, largest first, and nothing along the content axis
        assert abs(torch.dot(components[k], rotation[:, k + 1])) > 0.99
    assert stdev[2] < 1e-4 * stdev[0] and 2.5 < float(stdev[0] / stdev[1]) < 3.5
    # the spread is the root mean square displacement from frame 0 (about no mean)
    moved = (walks[:, 1:] - walks[:, :1]).flatten(0, 1)
    torch.testing.assert_close(stdev.pow(2).sum(), moved.double().pow(2).sum(1).mean().float(), rtol=1e-4, atol=0)
