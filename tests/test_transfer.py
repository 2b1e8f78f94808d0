"""Cross-domain training (`mocohd transfer`): the objective and a tiny run end to end."""
from __future__ import annotations

import torch
from typer.testing import CliRunner

from mocohd_cli.cli import app
from mocohd_cli.models.motion import MotionGenerator, load_motion, read_motion_info
from mocohd_cli.training import TrainConfig
from mocohd_cli.training.objectives import CrossDomainObjective

runner = CliRunner()
TINY = {"frames": 4, "time_step": 2, "video_frame_size": 32, "batch_size": 2, "h_dim": 16, "n_pca": 8,
        "d_channels": 4, "image_d_channels": 4, "queue_size": 16, "pca_samples": 512, "workers": 0,
        "num_samples": 2, "sample_format": "gif", "log_every": 1, "device": "cpu"}


def test_objective_sees_whole_clips_and_updates_queues_and_momentum_copy():
    config = TrainConfig(mode="cross-domain", **{k: v for k, v in TINY.items() if k != "device"})
    objective = CrossDomainObjective(config)
    first_conv = objective.video_d.scales[0].blocks[0][0]
    assert first_conv.in_channels == 3  # whole clips, no frame-0 concatenation
    rng = torch.Generator().manual_seed(0)
    real, fake = torch.rand(2, 4, 3, 32, 32) * 2 - 1, torch.rand(2, 4, 3, 32, 32) * 2 - 1
    motion = MotionGenerator(8, h_dim=4, n_pca=4)
    rollout = motion.rollout(torch.randn(2, 8), 4)
    queue_before = objective.image_d.queue_real.clone()
    g = objective.g_loss(real, fake, rollout, rng=rng)
    assert set(g) == {"video", "image_hinge", "image_match", "mi"}
    assert all(torch.isfinite(v) for v in g.values())
    assert not torch.equal(queue_before, objective.image_d.queue_real)  # G step pushes momentum features
    d = objective.d_loss(real, fake, rng=rng)
    assert set(d) == {"video", "video_gp", "image_hinge", "image_contrastive"}
    assert all(torch.isfinite(v) for v in d.values())
    sum(d.values()).backward()
    online = objective.image_d.online.blocks[0].conv1.parametrizations.weight.original
    assert online.grad is not None and online.grad.abs().sum() > 0
    held = [p.clone() for p in objective.image_d.momentum_copy.parameters()]
    with torch.no_grad():
        for p in objective.image_d.online.parameters():
            p.add_(1.0)
    objective.after_d_step()
    moved = [not torch.equal(a, b) for a, b in zip(held, objective.image_d.momentum_copy.parameters())]
    assert all(moved)


def test_tiny_transfer_run_exports_a_cross_domain_model_that_samples(tiny_stylegan2_checkpoint, tiny_videos, tmp_path):
    out = tmp_path / "run"
    args = ["transfer", "--image-domain", tiny_stylegan2_checkpoint, "--motion-domain", tiny_videos, "--proj-dim", "16",
            "--out", out, "--iterations", "2", "--w-match", "0.5", "--temperature", "0.1", "--momentum", "0.99"]
    for key, value in TINY.items():
        args += [f"--{key.replace('_', '-')}", value]
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    info = read_motion_info(out / "motion.safetensors")
    assert info["mode"] == "cross-domain" and info["n_frames"] == 4
    config = (out / "config.toml").read_text()
    assert 'mode = "cross-domain"' in config and "w_match = 0.5" in config and "queue_size = 16" in config
    assert "proj_dim = 16" in config
    assert list((out / "samples").glob("*.gif"))
    load_motion(out / "motion.safetensors")
    sampled = runner.invoke(app, ["sample", "--motion", str(out / "motion.safetensors"), "--frames", "6",
                                  "--num-videos", "2", "--format", "gif", "--out", str(tmp_path / "s")])
    assert sampled.exit_code == 0, sampled.output
    assert len(list((tmp_path / "s").glob("*.gif"))) == 2


def test_transfer_needs_both_domains(tiny_stylegan2_checkpoint, tmp_path):
    result = runner.invoke(app, ["transfer", "--image-domain", str(tiny_stylegan2_checkpoint), "--out",
                                 str(tmp_path / "r")])
    assert result.exit_code == 2
    assert "--motion-domain" in result.output


def test_bad_contrastive_settings_are_user_errors(tiny_stylegan2_checkpoint, tiny_videos, tmp_path):
    for option, value, message in (("--temperature", "0", "--temperature must be > 0"),
                                   ("--momentum", "1.5", "--momentum must be in [0, 1]")):
        result = runner.invoke(app, ["transfer", "--image-domain", str(tiny_stylegan2_checkpoint), "--motion-domain",
                                     str(tiny_videos), "--out", str(tmp_path / "r"), option, value])
        assert result.exit_code == 2 and message in result.output, result.output


def test_contrastive_discriminator_has_its_own_adam_settings():
    """As released (models/D_img.py): betas (0.0, 0.999), eps 1e-6 for the contrastive image D;
    the video D keeps the configured (0.5, 0.999)."""
    config = TrainConfig(mode="cross-domain", **{k: v for k, v in TINY.items() if k != "device"})
    objective = CrossDomainObjective(config)
    video, image = objective.optimizer_groups(config)
    assert video["betas"] == (0.5, 0.999) and "eps" not in video
    assert image["betas"] == (0.0, 0.999) and image["eps"] == 1e-6
    trainable = {id(p) for p in objective.parameters() if p.requires_grad}
    grouped = [id(p) for group in (video, image) for p in group["params"]]
    assert sorted(grouped) == sorted(trainable)  # every trainable parameter exactly once
    assert {id(p) for p in objective.image_d.online.parameters()} <= {id(p) for p in image["params"]}
    optimiser = torch.optim.Adam(objective.optimizer_groups(config), lr=config.lr)
    assert [g["eps"] for g in optimiser.param_groups] == [1e-8, 1e-6]
