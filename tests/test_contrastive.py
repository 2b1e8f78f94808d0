"""Contrastive image discriminator of cross-domain training (mocohd_cli.models.contrastive)."""
from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from mocohd_cli.infra.errors import MocohdError
from mocohd_cli.models.augment import augment
from mocohd_cli.models.contrastive import (
    ADAM_BETAS,
    ADAM_EPS,
    DISCRIMINATOR_ARCH,
    ContrastiveImageDiscriminator,
    ResidualDiscriminator,
    block_channels,
    contrastive_loss,
    discriminator_loss,
    gather_features,
    generator_loss,
    hinge_d_loss,
    hinge_g_loss,
)

RES = 32  # the smallest frame size of the release's channel table


def _disc(seed=0, **options):
    torch.manual_seed(seed)
    options = {"width": 4, "proj_dim": 8, "queue_size": 12, **options}
    return ContrastiveImageDiscriminator(RES, **options)


def _frames(n=3, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, RES, RES, generator=generator) * 2 - 1


def _seeded(seed):
    return torch.Generator().manual_seed(seed)


def _reference_contrastive(view1, view2, queue, temperature):
    """The definition, one row and one column at a time in float64 Python arithmetic."""
    def cos(a, b):
        return float(a @ b) / (float(a.norm()) * float(b.norm()))

    batch = len(view1)
    rows = [v.double() for v in view1] + [v.double() for v in view2]
    columns = rows + [q.double() for q in queue]
    total = 0.0
    for i, row in enumerate(rows):
        logits = [0.0 if j == i else cos(row, column) / temperature for j, column in enumerate(columns)]
        other_view = i + batch if i < batch else i - batch
        total += -(logits[other_view] - math.log(sum(math.exp(l) for l in logits)))
    return total / len(rows)


@pytest.mark.parametrize("temperature", [0.07, 0.5])
def test_contrastive_loss_matches_its_definition(temperature):
    generator = _seeded(0)
    view1, view2 = torch.randn(4, 5, generator=generator), torch.randn(4, 5, generator=generator)
    view2[0] = view1[0] * 3  # an easy positive: scale must not matter (cosine)
    queue = torch.randn(7, 5, generator=generator)
    got = contrastive_loss(view1, view2, queue, temperature)
    assert got.item() == pytest.approx(_reference_contrastive(view1, view2, queue, temperature), rel=1e-5)


def test_contrastive_loss_keeps_the_self_logit_in_the_softmax():
    # Identical views and an empty-ish queue: a masked-out diagonal would give log(2B-1 + K)
    # terms only; multiplying by 0 adds exp(0) for the self column.
    view = torch.nn.functional.normalize(torch.randn(2, 3, generator=_seeded(1)), dim=1)
    queue = torch.randn(1, 3, generator=_seeded(2))
    got = contrastive_loss(view, view, queue, temperature=1.0)
    assert got.item() == pytest.approx(_reference_contrastive(view, view, queue, 1.0), rel=1e-5)


def test_contrastive_loss_sends_no_gradient_to_the_queue():
    view1 = torch.randn(3, 4, requires_grad=True)
    queue = torch.randn(5, 4, requires_grad=True)
    contrastive_loss(view1, torch.randn(3, 4), queue).backward()
    assert view1.grad is not None and queue.grad is None


def test_hinge_losses():
    real, fake = torch.tensor([2.0, 0.5, -1.0]), torch.tensor([-2.0, 0.0, 1.0])
    loss_real, loss_fake = hinge_d_loss(real, fake)
    assert loss_real.item() == pytest.approx((0 + 0.5 + 2.0) / 3)
    assert loss_fake.item() == pytest.approx((0 + 1.0 + 2.0) / 3)
    assert hinge_g_loss(fake).item() == pytest.approx(1.0 / 3)


def test_channel_table_is_the_releases():
    # BigGAN_D.py D_arch at the released base width 96; every released run uses 128 px.
    assert sorted(DISCRIMINATOR_ARCH) == [32, 64, 128, 256]
    at_128 = block_channels(128, 96)
    assert [c_in for c_in, _, _ in at_128] == [3, 96, 192, 384, 768, 1536]
    assert [c_out for _, c_out, _ in at_128] == [96, 192, 384, 768, 1536, 1536]
    assert [down for _, _, down in at_128] == [True] * 5 + [False]
    at_64 = block_channels(64, 96)
    assert [c_out for _, c_out, _ in at_64] == [96, 192, 384, 768, 1536]  # last block 16x width
    assert [c_in for c_in, _, _ in at_64] == [3, 96, 192, 384, 768]
    at_256 = block_channels(256, 96)
    assert [c_in for c_in, _, _ in at_256] == [3, 96, 192, 384, 768, 768, 1536]
    assert [c_out for _, c_out, _ in at_256] == [96, 192, 384, 768, 768, 1536, 1536]
    assert block_channels(32, 96) == [(3, 384, True), (384, 384, True), (384, 384, False), (384, 384, False)]


@pytest.mark.parametrize("resolution, final_size", [(32, 8), (64, 4), (128, 4), (256, 4)])
def test_residual_discriminator_follows_the_table(resolution, final_size):
    width = 2
    net = ResidualDiscriminator(resolution, width=width, proj_dim=8)
    layout = DISCRIMINATOR_ARCH[resolution]
    assert len(net.blocks) == len(layout.out_mult)
    for i, (block, m_out, down) in enumerate(zip(net.blocks, layout.out_mult, layout.downsample)):
        assert block.conv1.out_channels == block.conv2.out_channels == width * m_out
        assert block.downsample == down and block.preactivation == (i > 0)
        # learnable shortcut exactly when the channels change or the block downsamples
        assert (block.shortcut_conv is not None) == (block.conv1.in_channels != width * m_out or down)
    assert net.proj0.in_features == width * layout.out_mult[-1]
    x = torch.zeros(2, 3, resolution, resolution).uniform_(-1, 1)
    assert net.blocks(x).shape == (2, width * layout.out_mult[-1], final_size, final_size)
    logits, projections = net(x)
    assert logits.shape == (2,) and projections.shape == (2, 8)
    assert all(hasattr(m, "parametrizations") for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)))
    with pytest.raises(ValueError):
        net(torch.zeros(2, 3, resolution // 2, resolution // 2))


@pytest.mark.parametrize("resolution", [16, 48, 512, 1024])
def test_frame_sizes_outside_the_table_are_refused(resolution):
    with pytest.raises(MocohdError, match="32, 64, 128, 256") as info:
        ContrastiveImageDiscriminator(resolution, width=4, proj_dim=8, queue_size=4)
    assert "--video-frame-size" in info.value.fix


def test_forward_is_the_releases_biggan_d():
    """BigGAN_D.py written out: DBlock = [relu] conv1 -> relu -> conv2 [-> pool] plus the
    shortcut (preactivated: conv_sc then pool; block 0: pool then conv_sc); then relu, sum
    pooling, relu(proj0) shared by linear (logit) and proj2(relu(proj1)) (projection)."""
    net = ResidualDiscriminator(32, width=2, proj_dim=8).eval()  # eval: fixed u/v, both passes agree
    relu, pool = torch.relu, torch.nn.AvgPool2d(2)
    x = torch.rand(3, 3, 32, 32, generator=_seeded(0)) * 2 - 1
    h = x
    with torch.no_grad():
        for i, block in enumerate(net.blocks):
            main = block.conv2(relu(block.conv1(relu(h) if i > 0 else h)))
            short = h
            if i > 0:
                short = block.shortcut_conv(short) if block.shortcut_conv is not None else short
                short = pool(short) if block.downsample else short
            else:
                short = block.shortcut_conv(pool(short))
            h = (pool(main) if block.downsample else main) + short
        h = relu(net.proj0(relu(h).sum(dim=(2, 3))))
        expected_logits, expected_projections = net.linear(h)[:, 0], net.proj2(relu(net.proj1(h)))
        logits, projections = net(x)
    torch.testing.assert_close(logits, expected_logits)
    torch.testing.assert_close(projections, expected_projections)


def test_adam_settings_are_the_releases():
    # models/D_img.py: ModelD_img(opt, D_B1=0.0, D_B2=0.999, adam_eps=1e-6)
    assert ADAM_BETAS == (0.0, 0.999) and ADAM_EPS == 1e-6


def test_features_are_unit_vectors_and_queues_start_normalised():
    disc = _disc()
    _, features = disc(_frames())
    assert torch.allclose(features.norm(dim=1), torch.ones(3), atol=1e-5)
    assert torch.allclose(disc.momentum_features(_frames()).norm(dim=1), torch.ones(3), atol=1e-5)
    for queue in (disc.queue_real, disc.queue_fake):
        assert queue.shape == (12, 8)
        assert torch.allclose(queue.norm(dim=1), torch.ones(12), atol=1e-5)
    assert not torch.equal(disc.queue_real, disc.queue_fake)


def _sn_vectors(net):
    """The spectral-norm power-iteration vectors u/v of every layer, by name, except the
    logit layer's u: one element, always 1 once normalised."""
    return {name: b.clone() for name, b in net.named_buffers() if name.endswith(("_u", "_v")) and b.numel() > 1}


def test_momentum_copy_starts_with_the_online_parameters_but_its_own_sn_vectors():
    # models/D_img.py: the EMA copy is built on its own and only parameters() are copied.
    disc = _disc()
    online, held = dict(disc.online.named_parameters()), dict(disc.momentum_copy.named_parameters())
    assert held.keys() == online.keys()
    assert all(torch.equal(held[name], online[name]) for name in online)
    assert not any(p.requires_grad for p in held.values())
    online_uv, held_uv = _sn_vectors(disc.online), _sn_vectors(disc.momentum_copy)
    assert held_uv.keys() == online_uv.keys() and len(held_uv) > 0
    assert not any(torch.allclose(held_uv[name], online_uv[name]) for name in online_uv)
    # Drawn from the seeded torch RNG: the same seed gives the same copy.
    again = _sn_vectors(_disc().momentum_copy)
    assert all(torch.equal(again[name], held_uv[name]) for name in held_uv)


def test_momentum_update_averages_parameters_only():
    disc = _disc(momentum=0.9)
    online = dict(disc.online.named_parameters())
    held = dict(disc.momentum_copy.named_parameters())
    before = {name: p.clone() for name, p in held.items()}
    uv_before = _sn_vectors(disc.momentum_copy)
    with torch.no_grad():
        for p in online.values():
            p.add_(torch.randn_like(p))
        disc.online(_frames())  # train mode: moves the online network's u/v
    disc.momentum_update()
    for name, p in held.items():
        expected = 0.9 * before[name] + 0.1 * online[name]
        assert torch.allclose(p, expected, atol=1e-6), name
        assert not torch.allclose(p, before[name])
    # The spectral-norm vectors are neither averaged nor copied (release _momentum_update_dis).
    uv_after = _sn_vectors(disc.momentum_copy)
    assert all(torch.equal(uv_after[name], uv_before[name]) for name in uv_before)


def test_momentum_copy_runs_in_train_mode_and_refines_its_own_sn_vectors():
    # The release never calls eval() on it: each use under no_grad runs one power iteration.
    disc = _disc()
    disc.train()
    assert disc.online.training and disc.momentum_copy.training
    online_uv, held_uv = _sn_vectors(disc.online), _sn_vectors(disc.momentum_copy)
    disc.momentum_features(_frames())
    after = _sn_vectors(disc.momentum_copy)
    assert all(not torch.equal(after[name], held_uv[name]) for name in held_uv)
    assert all(torch.equal(b, online_uv[name]) for name, b in _sn_vectors(disc.online).items())
    assert all(p.grad is None for p in disc.parameters())


def test_enqueue_wraps_around():
    disc = _disc(queue_size=5, proj_dim=2)
    start = disc.queue_real.clone()

    def batch(first, n):
        return torch.arange(first, first + n, dtype=torch.float32).view(n, 1).expand(n, 2)

    disc.enqueue(batch(0, 3), -batch(0, 3))
    assert disc.queue_ptr.item() == 3
    assert torch.equal(disc.queue_real[:3], batch(0, 3)) and torch.equal(disc.queue_fake[:3], -batch(0, 3))
    assert torch.equal(disc.queue_real[3:], start[3:])
    disc.enqueue(batch(10, 3), -batch(10, 3))  # rows 3, 4, then 0
    assert disc.queue_ptr.item() == 1
    assert disc.queue_real[:, 0].tolist() == [12, 1, 2, 10, 11]
    assert disc.queue_fake[:, 0].tolist() == [-12, -1, -2, -10, -11]
    disc.enqueue(batch(20, 7), -batch(20, 7))  # more than fits: the newest 5 remain
    assert disc.queue_ptr.item() == (1 + 5) % 5
    assert sorted(disc.queue_real[:, 0].tolist()) == [22, 23, 24, 25, 26]
    with pytest.raises(ValueError):
        disc.enqueue(batch(0, 2), batch(0, 3))


def test_state_dict_restores_queues_pointer_and_momentum_copy():
    disc = _disc()
    generator_loss(disc, _frames(), _frames(seed=1), rng=_seeded(0))
    disc.momentum_update()
    restored = _disc(seed=5)
    assert not torch.equal(restored.queue_real, disc.queue_real)
    restored.load_state_dict(disc.state_dict())
    for (name, a), (_, b) in zip(disc.state_dict().items(), restored.state_dict().items()):
        assert torch.equal(a, b), name
    keys = disc.state_dict().keys()
    assert {"queue_real", "queue_fake", "queue_ptr"} <= set(keys)
    assert any(k.startswith("momentum_copy.") and k.endswith("_u") for k in keys)  # its own u/v
    assert restored.queue_ptr.item() == 3
    # A resumed run continues exactly: same momentum features, same power-iteration state.
    torch.testing.assert_close(restored.momentum_features(_frames()), disc.momentum_features(_frames()),
                               rtol=0, atol=0)
    for (name, a), (_, b) in zip(disc.state_dict().items(), restored.state_dict().items()):
        assert torch.equal(a, b), name


def test_discriminator_loss_combines_hinge_and_contrastive_terms():
    disc = _disc()
    frame0, frame_t = _frames(seed=0).requires_grad_(), _frames(seed=1).requires_grad_()
    out = discriminator_loss(disc, frame0, frame_t, rng=_seeded(0))
    expected = out["hinge_real"] + out["hinge_fake"] + 2 * (out["contrastive_real"] + out["contrastive_fake"])
    assert torch.allclose(out["loss"], expected)
    # Recompute the terms by hand from the same augmented views (same seed, same order).
    generator = _seeded(0)
    views = [augment(f, rng=generator) for f in (frame0, frame0, frame_t, frame_t)]
    disc.online.eval()  # no power iteration: both evaluations see the same weights
    out = discriminator_loss(disc, frame0, frame_t, rng=_seeded(0))
    logits, features = zip(*(disc(v) for v in views))
    real, fake = hinge_d_loss(logits[0], logits[2])
    assert torch.allclose(out["hinge_real"], real, atol=1e-5)
    assert torch.allclose(out["hinge_fake"], fake, atol=1e-5)
    c_real = contrastive_loss(features[0], features[1], disc.queue_real)
    c_fake = contrastive_loss(features[2], features[3], disc.queue_fake)
    assert torch.allclose(out["contrastive_real"], c_real, atol=1e-5)
    assert torch.allclose(out["contrastive_fake"], c_fake, atol=1e-5)
    out["loss"].backward()
    assert frame0.grad is None and frame_t.grad is None  # frames are detached
    assert all(p.grad is not None for p in disc.online.parameters())
    assert all(p.grad is None for p in disc.momentum_copy.parameters())


def test_generator_loss_matches_features_and_fills_the_queues():
    disc = _disc()
    frame0, frame_t = _frames(seed=0).requires_grad_(), _frames(seed=1).requires_grad_()
    copy_before = copy.deepcopy(disc.momentum_copy.state_dict())
    out = generator_loss(disc, frame0, frame_t, rng=_seeded(3), w_match=0.5)
    assert torch.allclose(out["loss"], out["hinge"] + 0.5 * out["match"])
    rng = _seeded(3)
    real, fake = augment(frame0, rng=rng), augment(frame_t, rng=rng)
    assert disc.queue_ptr.item() == 3
    # Each momentum forward advanced the copy's power iteration: replay from the same state,
    # real first then fake (the release's order).
    disc.momentum_copy.load_state_dict(copy_before)
    assert torch.allclose(disc.queue_real[:3], disc.momentum_features(real), atol=1e-6)
    assert torch.allclose(disc.queue_fake[:3], disc.momentum_features(fake), atol=1e-6)
    disc.online.eval()
    out = generator_loss(disc, frame0, frame_t, rng=_seeded(3), update_queues=False)
    assert disc.queue_ptr.item() == 3
    (fake_logits, f_fake), (_, f_real) = disc(fake), disc(real)
    assert torch.allclose(out["hinge"], -fake_logits.mean(), atol=1e-5)
    cosine = (f_fake * f_real).sum(dim=1) / (f_fake.norm(dim=1) * f_real.norm(dim=1))
    assert torch.allclose(out["match"], -cosine.mean(), atol=1e-5)
    out["loss"].backward()
    assert frame0.grad.abs().sum() > 0 and frame_t.grad.abs().sum() > 0


def test_losses_refuse_mismatched_frames():
    disc = _disc()
    for loss in (discriminator_loss, generator_loss):
        with pytest.raises(ValueError):
            loss(disc, _frames(n=3), _frames(n=2))


def test_gather_features_is_the_identity_without_distributed():
    features = torch.randn(3, 4)
    assert gather_features(features) is features


def _distributed_worker(rank, world_size, init_file, result_file):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        torch.set_num_threads(1)
        disc = _disc(queue_size=8, proj_dim=3)  # same seed: same initial queues on all ranks
        # Rank-specific markers: rank r enqueues rows (r + 1, i, 0) and -(r + 1, i, 0).
        marker = torch.tensor([[rank + 1.0, i, 0.0] for i in range(2)])
        disc.enqueue(marker, -marker)
        gathered = gather_features(marker)
        everything = [torch.empty_like(disc.queue_real) for _ in range(world_size)]
        dist.all_gather(everything, disc.queue_real)
        result = {"queue_real": disc.queue_real.clone(), "queue_fake": disc.queue_fake.clone(),
                  "ptr": disc.queue_ptr.clone(), "gathered": gathered, "all": everything}
        # Both losses through a DDP wrapper, with different frames on each rank.
        wrapped = torch.nn.parallel.DistributedDataParallel(disc, broadcast_buffers=False)
        frame0, frame_t = _frames(n=2, seed=10 * rank), _frames(n=2, seed=10 * rank + 1)
        generator_loss(wrapped, frame0, frame_t, rng=_seeded(rank))
        discriminator_loss(wrapped, frame0, frame_t, rng=_seeded(rank))["loss"].backward()
        grads = torch.cat([p.grad.flatten() for p in disc.online.parameters()])
        all_grads = [torch.empty_like(grads) for _ in range(world_size)]
        dist.all_gather(all_grads, grads)
        queues = [torch.empty_like(disc.queue_fake) for _ in range(world_size)]
        dist.all_gather(queues, disc.queue_fake)
        # The momentum copy's own u/v: refined on each rank, from the same weights.
        uv = torch.cat([b.flatten() for b in _sn_vectors(disc.momentum_copy).values()])
        all_uv = [torch.empty_like(uv) for _ in range(world_size)]
        dist.all_gather(all_uv, uv)
        result.update(ptr_after=disc.queue_ptr.clone(), grads=all_grads, queues_after=queues, uv=all_uv)
        if rank == 0:
            torch.save(result, result_file)
        # Tear down in step: drop DDP's reducer, then wait for the peer, before the group goes
        # (a rank leaving while the other still talks to it aborts gloo: "terminate called ...").
        del wrapped
        dist.barrier()
    finally:
        dist.destroy_process_group()


def test_two_gloo_processes_fill_the_queues_with_both_ranks_features(tmp_path):
    result_file = tmp_path / "result.pt"
    mp.spawn(_distributed_worker, args=(2, str(tmp_path / "init"), str(result_file)), nprocs=2, join=True)
    result = torch.load(result_file, weights_only=True)
    expected = torch.tensor([[1.0, 0, 0], [1.0, 1, 0], [2.0, 0, 0], [2.0, 1, 0]])
    assert torch.equal(result["gathered"], expected)
    assert torch.equal(result["queue_real"][:4], expected)
    assert torch.equal(result["queue_fake"][:4], -expected)
    assert result["ptr"].item() == 4
    assert torch.equal(result["all"][0], result["all"][1])  # queues identical on both ranks
    # Through DDP: one generator step queued 2 features per rank, and the D gradients
    # were averaged (equal on both ranks although each rank saw different frames).
    assert result["ptr_after"].item() == (4 + 4) % 8
    assert torch.equal(result["queues_after"][0], result["queues_after"][1])
    assert torch.allclose(result["grads"][0], result["grads"][1], atol=1e-6)
    assert torch.equal(result["uv"][0], result["uv"][1])  # momentum copies stay identical
    assert result["grads"][0].abs().sum() > 0
