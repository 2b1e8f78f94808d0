"""Contrastive image discriminator of cross-domain training (mocohd_cli.models.contrastive)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from mocohd_cli.models.augment import augment
from mocohd_cli.models.contrastive import (
    ContrastiveImageDiscriminator,
    ResidualDiscriminator,
    contrastive_loss,
    discriminator_loss,
    gather_features,
    generator_loss,
    hinge_d_loss,
    hinge_g_loss,
)

RES = 16


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


@pytest.mark.parametrize("resolution, n_down", [(16, 2), (32, 3)])
def test_residual_discriminator_depth_and_outputs(resolution, n_down):
    net = ResidualDiscriminator(resolution, width=4, proj_dim=8)
    assert len(net.blocks) == n_down + 1
    logits, projections = net(torch.zeros(2, 3, resolution, resolution).uniform_(-1, 1))
    assert logits.shape == (2,) and projections.shape == (2, 8)
    assert all(hasattr(m, "parametrizations") for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)))
    with pytest.raises(ValueError):
        net(torch.zeros(2, 3, resolution // 2, resolution // 2))


def test_features_are_unit_vectors_and_queues_start_normalised():
    disc = _disc()
    _, features = disc(_frames())
    assert torch.allclose(features.norm(dim=1), torch.ones(3), atol=1e-5)
    assert torch.allclose(disc.momentum_features(_frames()).norm(dim=1), torch.ones(3), atol=1e-5)
    for queue in (disc.queue_real, disc.queue_fake):
        assert queue.shape == (12, 8)
        assert torch.allclose(queue.norm(dim=1), torch.ones(12), atol=1e-5)
    assert not torch.equal(disc.queue_real, disc.queue_fake)


def test_momentum_copy_starts_equal_and_follows_the_ema_rule():
    disc = _disc(momentum=0.9)
    online = dict(disc.online.named_parameters())
    held = dict(disc.momentum_copy.named_parameters())
    assert all(torch.equal(held[name], online[name]) for name in online)
    assert not any(p.requires_grad for p in held.values())
    before = {name: p.clone() for name, p in held.items()}
    with torch.no_grad():
        for p in online.values():
            p.add_(torch.randn_like(p))
    disc.momentum_update()
    for name, p in held.items():
        expected = 0.9 * before[name] + 0.1 * online[name]
        assert torch.allclose(p, expected, atol=1e-6), name
        assert not torch.allclose(p, before[name])
    # The spectral-norm vectors follow the online network.
    for held_buffer, online_buffer in zip(disc.momentum_copy.buffers(), disc.online.buffers()):
        assert torch.equal(held_buffer, online_buffer)


def test_momentum_copy_stays_in_eval_mode():
    disc = _disc()
    disc.train()
    assert disc.online.training and not disc.momentum_copy.training


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
    assert any(k.startswith("momentum_copy.") for k in keys)
    assert restored.queue_ptr.item() == 3


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
    out = generator_loss(disc, frame0, frame_t, rng=_seeded(3), w_match=0.5)
    assert torch.allclose(out["loss"], out["hinge"] + 0.5 * out["match"])
    generator = _seeded(3)
    real, fake = augment(frame0, rng=generator), augment(frame_t, rng=generator)
    assert disc.queue_ptr.item() == 3
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
        result.update(ptr_after=disc.queue_ptr.clone(), grads=all_grads, queues_after=queues)
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
    assert result["grads"][0].abs().sum() > 0
