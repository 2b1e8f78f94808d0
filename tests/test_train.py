"""In-domain training end to end: a tiny StyleGAN2, a tiny generated dataset, a few steps."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mocohd_cli.cli import app
from mocohd_cli.infra.distributed import init_distributed
from mocohd_cli.infra.errors import MocohdError
from mocohd_cli.infra.files import read_safetensors, sha256_of
from mocohd_cli.models.backbone import load_backbone
from mocohd_cli.models.motion import load_motion, read_motion_info
from mocohd_cli.infra.runs import dumps_toml, latest_run
from mocohd_cli.training import TrainConfig, train
from mocohd_cli.training.config import GROUPS, group_key, ungrouped
from mocohd_cli.training.objectives import InDomainObjective
from mocohd_cli.training.trainer import Trainer

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]

# Tiny settings: 4 frames of 16 px from the 32 px tiny StyleGAN2, batch 2, narrow discriminators.
TINY = {"frames": 4, "time_step": 2, "video_frame_size": 16, "batch_size": 2, "h_dim": 16, "n_pca": 8,
        "d_channels": 4, "pca_samples": 512, "workers": 0, "num_samples": 2, "sample_format": "gif",
        "log_every": 1, "device": "cpu"}


@pytest.fixture
def videos(tiny_videos):
    return tiny_videos


def config(checkpoint, data, out, **overrides) -> TrainConfig:
    return TrainConfig(backbone="stylegan2", checkpoint=str(checkpoint), data=str(data), out=str(out),
                       **{**TINY, **overrides})


def cli_args(values: dict) -> list[str]:
    args = []
    for key, value in values.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    return args


class CountingObjective(InDomainObjective):
    """The in-domain objective, counting how the trainer drives it."""

    def __init__(self, cfg, backbone):
        super().__init__(cfg, backbone)
        self.calls = {"g": 0, "d": 0, "after_d": 0}

    def g_loss(self, *args, **kwargs):
        self.calls["g"] += 1
        return super().g_loss(*args, **kwargs)

    def d_loss(self, *args, **kwargs):
        self.calls["d"] += 1
        return super().d_loss(*args, **kwargs)

    def after_d_step(self):
        self.calls["after_d"] += 1


def test_training_moves_the_motion_model_only(tiny_stylegan2_checkpoint, videos, tmp_path):
    cfg = config(tiny_stylegan2_checkpoint, videos, tmp_path / "run", iterations=2, g_steps=3)
    trainer = Trainer(cfg, init_distributed("cpu"), objective_factory=CountingObjective, progress=False)
    motion_before = {k: v.clone() for k, v in trainer.motion.state_dict().items()}
    backbone_before = {k: v.clone() for k, v in trainer.backbone.state_dict().items()}
    d_before = {k: v.clone() for k, v in trainer.objective.state_dict().items()}
    result = trainer.fit()

    assert result.steps == 2 and result.losses
    assert all(np.isfinite(v) for v in result.losses.values())
    assert set(result.losses) == {"g/video", "g/image", "g/mi", "d/video", "d/video_gp", "d/image"}
    # the schedule: g_steps motion updates per discriminator update
    assert trainer.objective.calls == {"g": 6, "d": 2, "after_d": 2}
    for opt in (trainer.opt_g, trainer.opt_d):
        assert opt.param_groups[0]["lr"] == 1e-4 and opt.param_groups[0]["betas"] == (0.5, 0.999)
    after = trainer.motion.state_dict()
    for name in ("w", "enc_cell.weight_ih", "cell.weight_hh", "fc1.weight", "fc2.weight"):
        assert not torch.equal(after[name], motion_before[name]), name
    for name in ("pca_components", "pca_stdev"):  # the PCA basis is data, not a parameter
        assert torch.equal(after[name], motion_before[name])
    assert all(torch.equal(v, backbone_before[k]) for k, v in trainer.backbone.state_dict().items())
    assert not torch.equal(trainer.objective.state_dict()["video_d.scales.0.blocks.0.0.weight"],
                           d_before["video_d.scales.0.blocks.0.0.weight"])
    assert not any(p.requires_grad for p in trainer.backbone.parameters())


def test_latent_motion_discriminator_trains_on_projected_walks_and_resumes_exactly(tiny_stylegan2_checkpoint, videos,
                                                                                  tmp_path):
    from mocohd_cli.models.latent_prior import write_projections

    backbone = load_backbone("stylegan2", tiny_stylegan2_checkpoint)
    walks = backbone.sample_latent(3)[:, None] + 0.1 * torch.randn(3, 6, backbone.latent_dim).cumsum(1)
    projections = write_projections(tmp_path / "projected.safetensors", walks, backbone_sha256=backbone.checkpoint_sha256,
                                    time_step=2, size=16, data="videos", psnr=30.0)
    settings = {"iterations": 4, "checkpoint_every": 2, "sample_every": 100, "num_samples": 0, "g_steps": 1,
                "w_latent_motion": 1.0, "latent_motion": str(projections)}
    trainer = Trainer(config(tiny_stylegan2_checkpoint, videos, tmp_path / "one", **settings), init_distributed("cpu"),
                      progress=False)
    disc = trainer.term("latent_motion").discriminator
    before = [p.detach().clone() for p in disc.parameters()]
    assert trainer.term("latent_motion").bank.shape == (3 * 3, 3, 8)  # 3 clips of 4 frames per walk of 6; 8 PCA units
    result = trainer.fit()
    assert {"g/latent", "d/latent"} <= set(result.losses) and np.isfinite(result.losses["g/latent"])
    assert any(not torch.equal(a, p) for a, p in zip(before, disc.parameters()))

    full = train(config(tiny_stylegan2_checkpoint, videos, tmp_path / "full", **settings), progress=False)
    halves = tmp_path / "halves"
    train(config(tiny_stylegan2_checkpoint, videos, halves, **{**settings, "iterations": 2}), progress=False)
    resumed = train(config(tiny_stylegan2_checkpoint, videos, halves, resume=True, **settings), progress=False)
    a, _ = read_safetensors(full.motion_path)
    b, _ = read_safetensors(resumed.motion_path)
    assert all(torch.equal(a[k], b[k]) for k in a)  # the discriminator and its optimiser came back with the state
    with pytest.raises(MocohdError, match="another backbone"):
        other = write_projections(tmp_path / "other.safetensors", walks, backbone_sha256="0" * 64, time_step=2,
                                  size=16, data="videos", psnr=30.0)
        Trainer(config(tiny_stylegan2_checkpoint, videos, tmp_path / "bad", **{**settings, "latent_motion": str(other)}),
                init_distributed("cpu"), progress=False)


def test_video_basis_is_the_projected_walks_pca_and_survives_resume(tiny_stylegan2_checkpoint, videos, tmp_path):
    from mocohd_cli.models.latent_prior import write_projections
    from mocohd_cli.models.pca import displacement_pca

    backbone = load_backbone("stylegan2", tiny_stylegan2_checkpoint)
    gen = torch.Generator().manual_seed(0)
    walks = backbone.sample_latent(4)[:, None] + 0.1 * torch.randn(4, 6, backbone.latent_dim, generator=gen).cumsum(1)
    projections = write_projections(tmp_path / "projected.safetensors", walks, backbone_sha256=backbone.checkpoint_sha256,
                                    time_step=2, size=16, data="videos", psnr=30.0)
    settings = {"iterations": 2, "checkpoint_every": 1, "sample_every": 100, "num_samples": 0, "g_steps": 1,
                "pca_source": "videos", "latent_motion": str(projections), "w_latent_motion": 1.0}
    trainer = Trainer(config(tiny_stylegan2_checkpoint, videos, tmp_path / "run", **settings), init_distributed("cpu"),
                      progress=False)
    components, stdev = displacement_pca(walks)
    torch.testing.assert_close(trainer.motion.pca_components, components[:8])
    torch.testing.assert_close(trainer.motion.pca_stdev, stdev[:8])
    # the latent motion discriminator's bank is in the same units: the projected walks' spread is 1 along each
    bank = trainer.term("latent_motion").bank
    assert bank.shape == (4 * 3, 3, 8) and torch.isfinite(bank).all()
    trainer.fit()
    # a resumed run takes the basis from the state, and refuses another source
    resumed = Trainer(config(tiny_stylegan2_checkpoint, videos, tmp_path / "run", resume=True,
                             **{**settings, "iterations": 3}), init_distributed("cpu"), progress=False)
    assert torch.equal(resumed.motion.pca_components, trainer.motion.pca_components)
    with pytest.raises(MocohdError, match="pca_source"):
        Trainer(config(tiny_stylegan2_checkpoint, videos, tmp_path / "run", resume=True,
                       **{**settings, "pca_source": "latents", "iterations": 3}), init_distributed("cpu"), progress=False)
    # walks that span fewer directions than --n-pca: one error naming the file and the fix
    short = write_projections(tmp_path / "short.safetensors", walks[:1, :5], backbone_sha256=backbone.checkpoint_sha256,
                              time_step=2, size=16, data="videos", psnr=30.0)
    with pytest.raises(MocohdError, match="only 4 directions") as error:
        Trainer(config(tiny_stylegan2_checkpoint, videos, tmp_path / "few", **{**settings, "latent_motion": str(short)}),
                init_distributed("cpu"), progress=False)
    assert "short.safetensors" in str(error.value) and "--n-pca" in str(error.value)
    with pytest.raises(MocohdError, match="contradict"):
        config(tiny_stylegan2_checkpoint, videos, tmp_path / "bad", pca=False, pca_source="videos").validate()
    with pytest.raises(MocohdError, match="--pca-source"):
        config(tiny_stylegan2_checkpoint, videos, tmp_path / "bad", pca_source="frames").validate()


def test_training_videos_are_projected_once_and_cached(tiny_stylegan2_checkpoint, videos, tmp_path, monkeypatch):
    from mocohd_cli.models import inversion
    from mocohd_cli.training import projections

    backbone = load_backbone("stylegan2", tiny_stylegan2_checkpoint)
    quick = dict(first_steps=3, steps=2, candidates=4)
    latents = projections.project_training_videos(backbone, str(videos), frames=4, time_step=2,
                                                  size=backbone.resolution, **quick)
    # 10-frame videos every 2nd frame: 5 frames each, all 3 videos
    assert latents.shape == (3, 5, backbone.latent_dim) and torch.isfinite(latents).all()
    cached = list((tmp_path / "mocohd-cache" / "projections").glob("*.safetensors"))
    assert len(cached) == 1
    calls = []
    monkeypatch.setattr(projections, "project_videos", lambda *a, **k: calls.append(1))
    again = projections.project_training_videos(backbone, str(videos), frames=4, time_step=2,
                                                size=backbone.resolution, **quick)
    assert not calls and torch.equal(again, latents)  # read from the cache
    # the key holds every setting with its default filled in: giving a default explicitly finds the same
    # file, any other value (or a changed default) does not
    key = lambda **projection: projections.projections_cache_path("sha", 1.0, str(videos), [], 5, 2, 16, 0, projection)
    assert key(**quick) == key(**quick, motion_weight=inversion.project_videos.__kwdefaults__["motion_weight"])
    assert key(**quick) != key(**quick, motion_weight=3.0) != key(**quick, anchor_weight=0.5)


def test_shared_drift_penalty_unrolls_latents_past_the_clip(tiny_stylegan2_checkpoint, videos, tmp_path):
    cfg = config(tiny_stylegan2_checkpoint, videos, tmp_path / "run", iterations=1, g_steps=1, w_drift=10.0,
                 drift_horizon=9)
    trainer = Trainer(cfg, init_distributed("cpu"), progress=False)
    fake, rollout, later = trainer.generate(trainer.rollout_local, 2, cfg.drift_horizon)
    assert rollout.latents.shape[1] == 9 and fake.shape[1] == cfg.frames  # only the clip is synthesised
    assert later is None
    result = trainer.fit()
    assert "g/drift" in result.losses and np.isfinite(result.losses["g/drift"])
    with pytest.raises(MocohdError, match="--drift-horizon"):
        config(tiny_stylegan2_checkpoint, videos, tmp_path / "bad", drift_horizon=2).validate()
    with pytest.raises(MocohdError, match="--batch-size 2 or more"):  # one video has no other to compare with
        Trainer(config(tiny_stylegan2_checkpoint, videos, tmp_path / "one", batch_size=1, w_drift=1.0),
                init_distributed("cpu"), progress=False)


def test_running_drift_penalty_trains_and_resumes_exactly(tiny_stylegan2_checkpoint, videos, tmp_path):
    settings = {"iterations": 4, "checkpoint_every": 2, "sample_every": 100, "num_samples": 0, "w_drift": 10.0,
                "drift_momentum": 0.9, "drift_horizon": 6}
    full = train(config(tiny_stylegan2_checkpoint, videos, tmp_path / "full", **settings), progress=False)
    assert np.isfinite(full.losses["g/drift"])
    state = torch.load(full.run_dir / "state" / "latest.pt", weights_only=True)
    assert state["drift"]["updates"].item() == 4 * 5  # one update per motion step
    assert state["drift"]["mean"].shape == (5, 8) and state["drift"]["mean"].abs().sum() > 0

    halves = tmp_path / "halves"
    train(config(tiny_stylegan2_checkpoint, videos, halves, **{**settings, "iterations": 2}), progress=False)
    resumed = train(config(tiny_stylegan2_checkpoint, videos, halves, resume=True, **settings), progress=False)
    a, _ = read_safetensors(full.motion_path)
    b, _ = read_safetensors(resumed.motion_path)
    assert all(torch.equal(a[k], b[k]) for k in a)  # the running mean came back with the state
    with pytest.raises(MocohdError, match="drift-momentum"):
        config(tiny_stylegan2_checkpoint, videos, tmp_path / "bad", drift_momentum=1.0).validate()


def test_motion_feedback_trains_is_saved_and_cannot_be_flipped_on_resume(tiny_stylegan2_checkpoint, videos, tmp_path):
    settings = {"iterations": 1, "g_steps": 1, "sample_every": 100, "num_samples": 0, "motion_feedback": True}
    result = train(config(tiny_stylegan2_checkpoint, videos, tmp_path / "run", **settings), progress=False)
    motion = load_motion(result.motion_path)
    assert motion.feedback and motion.cell.weight_ih.shape[1] == motion.latent_dim + motion.n_pca
    with pytest.raises(MocohdError, match="motion_feedback was True"):
        train(config(tiny_stylegan2_checkpoint, videos, tmp_path / "run", **{**settings, "motion_feedback": False,
                                                                            "iterations": 2, "resume": True}),
              progress=False)


def test_ablation_knobs_drop_the_mi_loss_and_the_pca_basis(tiny_stylegan2_checkpoint, videos, tmp_path):
    cfg = config(tiny_stylegan2_checkpoint, videos, tmp_path / "run", iterations=1, g_steps=1, w_mi=0.0, pca=False)
    trainer = Trainer(cfg, init_distributed("cpu"), progress=False)
    assert torch.equal(trainer.motion.pca_components, torch.eye(trainer.backbone.latent_dim)[:cfg.n_pca])
    assert torch.equal(trainer.motion.pca_stdev, torch.ones(cfg.n_pca))
    assert trainer.fit().losses["g/mi"] == 0.0


def test_train_command_end_to_end(tiny_stylegan2_checkpoint, videos, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config_file = tmp_path / "tiny.toml"
    config_file.write_text("".join(f"{k} = {v!r}\n".replace("'", '"') for k, v in TINY.items())
                           + "iterations = 99\nseed = 5\n")
    result = runner.invoke(app, ["train", "--checkpoint", str(tiny_stylegan2_checkpoint), "--data", str(videos),
                                 "--config", str(config_file), "--iterations", "4", "--sample-every", "2",
                                 "--checkpoint-every", "2"])
    assert result.exit_code == 0, result.output
    run = latest_run(tmp_path / "mocohd-runs")
    assert run is not None and run.name.startswith("train-")
    text = (run / "config.toml").read_text()
    saved = ungrouped(tomllib.loads(text))
    assert saved["iterations"] == 4 and saved["seed"] == 5 and saved["frames"] == 4  # options beat the file
    # a table per group, in the help's order: what a reader of the file sees is what --help shows
    tables = [line for line in text.splitlines() if line.startswith("[")]
    assert tables == [f"[{group_key(group)}]" for group in GROUPS if f"[{group_key(group)}]" in tables]
    assert {"[data]", "[optimisation]", "[output]"} <= set(tables) and "frames = 4" in text.split("[data]")[1]
    assert (run / "samples" / "step_2.gif").is_file() and (run / "samples" / "step_4.gif").is_file()
    assert (run / "motion_step_2.safetensors").is_file()
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert "step 4/4" in (run / "log.txt").read_text()
    state = torch.load(run / "state" / "latest.pt", weights_only=True)
    assert state["step"] == 4 and state["data"]["next_batch"] == 4

    meta = read_motion_info(run / "motion.safetensors")
    assert meta["backbone"] == "stylegan2" and meta["backbone_name"] == "stylegan2"
    assert meta["mode"] == "in-domain" and meta["n_frames"] == 4 and meta["time_step"] == 2
    assert meta["backbone_sha256"] == sha256_of(tiny_stylegan2_checkpoint)
    motion = load_motion(run / "motion.safetensors")
    assert motion.n_pca == 8 and motion.h_dim == 16

    # the exported model samples with `mocohd sample --motion`, and with no arguments at all
    sampled = runner.invoke(app, ["sample", "--motion", str(run / "motion.safetensors"), "--num-videos", "2",
                                  "--frames", "6", "--format", "gif", "--out", str(tmp_path / "s")])
    assert sampled.exit_code == 0, sampled.output
    assert len(list((tmp_path / "s").glob("*.gif"))) == 2
    latest = runner.invoke(app, ["sample", "--num-videos", "1", "--frames", "3", "--format", "gif", "--out",
                                 str(tmp_path / "latest")])
    assert latest.exit_code == 0, latest.output
    assert f"{run.name}/motion.safetensors" in latest.output.replace("\n", "")


def _run_killed_after_first_state(args: list[str], state: Path, env: dict) -> None:
    process = subprocess.Popen([sys.executable, "-m", "mocohd_cli", "train", *args], env=env, cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not state.exists():
        if process.poll() is not None:
            pytest.fail(f"training exited before writing a state: {process.stderr.read().decode()[-2000:]}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("no training state after 120 s")
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL


def test_resume_after_sigkill_matches_an_uninterrupted_run(tiny_stylegan2_checkpoint, videos, tmp_path):
    settings = {**TINY, "iterations": 8, "checkpoint_every": 2, "sample_every": 100, "num_samples": 0, "seed": 3}
    full = train(config(tiny_stylegan2_checkpoint, videos, tmp_path / "full", **settings), progress=False)

    killed = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CI": "1"}
    args = ["--checkpoint", str(tiny_stylegan2_checkpoint), "--data", str(videos), "--out", str(killed),
            *cli_args({**settings, "workers": 1})]  # decoding in a worker must not change the clips
    _run_killed_after_first_state(args, killed / "state" / "latest.pt", env)
    step_at_kill = torch.load(killed / "state" / "latest.pt", weights_only=True)["step"]
    assert 0 < step_at_kill < 8 and not (killed / "motion.safetensors").exists()

    resumed = train(config(tiny_stylegan2_checkpoint, videos, killed, resume=True, **settings), progress=False)
    assert resumed.steps == full.steps == 8
    a, _ = read_safetensors(full.motion_path)
    b, _ = read_safetensors(resumed.motion_path)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    sa = torch.load(full.run_dir / "state" / "latest.pt", weights_only=True)
    sb = torch.load(resumed.run_dir / "state" / "latest.pt", weights_only=True)
    assert all(torch.equal(sa["objective"][k], sb["objective"][k]) for k in sa["objective"])
    assert "resumed at step" in (killed / "log.txt").read_text()


def test_resume_refuses_changed_settings(tiny_stylegan2_checkpoint, videos, tmp_path):
    cfg = config(tiny_stylegan2_checkpoint, videos, tmp_path / "r", iterations=1, num_samples=0)
    train(cfg, progress=False)
    result = runner.invoke(app, ["train", "--resume", "--out", str(tmp_path / "r"), "--frames", "5",
                                 "--iterations", "2"])
    assert result.exit_code == 2
    assert "frames was 4" in result.output
    again = runner.invoke(app, ["train", "--checkpoint", str(tiny_stylegan2_checkpoint), "--data", str(videos),
                                "--out", str(tmp_path / "r")])
    assert again.exit_code == 2 and "--resume" in again.output


TORCHRUN_WORKER = """
import sys, torch
from mocohd_cli.training import trainer

fit = trainer.Trainer.fit

def fit_then_dump(self):  # every rank's weights after training, for the test to compare
    result = fit(self)
    torch.save({"motion": self.motion.state_dict(), "objective": self.objective.state_dict(),
                "drift": self.term("drift").state_dict()}, f"{self.run.path}/rank{self.ctx.rank}.pt")
    return result

trainer.Trainer.fit = fit_then_dump
from mocohd_cli.cli import main
sys.argv = ["mocohd", *sys.argv[1:]]
main()
"""


def test_train_command_under_torchrun_with_two_processes(tiny_stylegan2_checkpoint, videos, tmp_path):
    """`torchrun ... mocohd train`: only rank 0 writes, and gradients really are averaged (the ranks
    draw different clips and noise, yet after training both hold the same weights and the same running
    mean of the shared-drift penalty)."""
    worker = tmp_path / "worker.py"
    worker.write_text(TORCHRUN_WORKER)
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CI": "1", "MOCOHD_CACHE": str(tmp_path / "cache")}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(worker),
               "train", "--checkpoint", str(tiny_stylegan2_checkpoint), "--data", str(videos), "--out", str(out),
               *cli_args({**TINY, "iterations": 2, "num_samples": 0, "w_drift": 1.0, "drift_momentum": 0.9}),
               "--motion-feedback"]  # the examples' recurrence: its weights too must stay the same on both ranks
    done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    log = (out / "log.txt").read_text()
    assert "world size 2" in log and log.count("started at step") == 1  # only rank 0 writes
    assert len(list((out / "tensorboard").glob("events.*"))) == 1
    assert torch.load(out / "state" / "latest.pt", weights_only=True)["step"] == 2
    motion = load_motion(out / "motion.safetensors")
    assert motion.feedback and all(torch.isfinite(p).all() for p in motion.parameters())
    rank0, rank1 = (torch.load(out / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert all(torch.equal(rank0["motion"][k], rank1["motion"][k]) for k in rank0["motion"])
    assert rank0["drift"]["mean"].abs().sum() > 0 and torch.equal(rank0["drift"]["mean"], rank1["drift"]["mean"])
    # discriminator weights too (instance-norm running statistics are per rank between broadcasts)
    weights = [k for k in rank0["objective"] if "running" not in k and "num_batches" not in k]
    assert weights and all(torch.equal(rank0["objective"][k], rank1["objective"][k]) for k in weights)


@pytest.mark.parametrize("case", ["empty", "short", "missing_data", "missing_checkpoint", "n_pca", "fp16_cpu",
                                  "config_key", "too_few_frames"])
def test_bad_inputs_give_one_clear_error(tiny_stylegan2_checkpoint, videos, tmp_path, case):
    args = ["train", "--out", str(tmp_path / "o"), *cli_args({**TINY, "iterations": 1})]
    expected = {"empty": "no videos found", "short": "shorter than", "missing_data": "--data",
                "missing_checkpoint": "--checkpoint", "n_pca": "--n-pca", "fp16_cpu": "--precision bf16",
                "config_key": "unknown training option 'bogus'", "too_few_frames": "--frames must be >= 4"}[case]
    if case == "empty":
        (tmp_path / "empty").mkdir()
        args += ["--checkpoint", str(tiny_stylegan2_checkpoint), "--data", str(tmp_path / "empty")]
    elif case == "short":
        args += ["--checkpoint", str(tiny_stylegan2_checkpoint), "--data", str(videos), "--frames", "9"]
    elif case == "missing_data":
        args += ["--checkpoint", str(tiny_stylegan2_checkpoint)]
    elif case == "missing_checkpoint":
        args += ["--data", str(videos)]
    elif case == "n_pca":
        args += ["--checkpoint", str(tiny_stylegan2_checkpoint), "--data", str(videos), "--n-pca", "64"]
    elif case == "fp16_cpu":
        args += ["--checkpoint", str(tiny_stylegan2_checkpoint), "--data", str(videos), "--precision", "fp16"]
    elif case == "too_few_frames":
        args += ["--checkpoint", str(tiny_stylegan2_checkpoint), "--data", str(videos), "--frames", "3"]
    else:
        (tmp_path / "bad.toml").write_text("frames = 4\nbogus = 1\n")
        args += ["--checkpoint", str(tiny_stylegan2_checkpoint), "--data", str(videos), "--config",
                 str(tmp_path / "bad.toml")]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert expected in result.output and "Traceback" not in result.output
    assert not (tmp_path / "o").exists()  # a failed start leaves no run folder behind


def test_epochs_set_the_number_of_iterations(tiny_stylegan2_checkpoint, videos, tmp_path):
    cfg = config(tiny_stylegan2_checkpoint, videos, tmp_path / "e", epochs=2.0)  # 3 videos, batch 2
    assert Trainer(cfg, init_distributed("cpu"), progress=False).iterations == 3
    cfg = config(tiny_stylegan2_checkpoint, videos, tmp_path / "e", epochs=2.0, iterations=7)
    assert Trainer(cfg, init_distributed("cpu"), progress=False).iterations == 7


def test_sizes_default_to_what_the_backbone_has(tiny_stylegan2_checkpoint, videos, tmp_path):
    values = {k: v for k, v in TINY.items() if k not in ("video_frame_size", "n_pca")}
    cfg = TrainConfig(checkpoint=str(tiny_stylegan2_checkpoint), data=str(videos), out=str(tmp_path / "d"), **values)
    trainer = Trainer(cfg, init_distributed("cpu"), progress=False)
    # the release's 128 px and 384 components, capped by the tiny backbone's 32 px and 32-d W
    assert trainer.config.video_frame_size == 32 and trainer.config.n_pca == 32
    assert trainer.motion.n_pca == 32 and trainer.dataset[(0, 0)].shape[-1] == 32


def test_bf16_autocast_trains(tiny_stylegan2_checkpoint, videos, tmp_path):
    cfg = config(tiny_stylegan2_checkpoint, videos, tmp_path / "bf16", iterations=1, g_steps=1, num_samples=0,
                 precision="bf16")
    result = train(cfg, progress=False)
    assert result.steps == 1 and all(np.isfinite(v) for v in result.losses.values())


def test_run_folder_helpers(tmp_path):
    values = {"data": 'C:\\videos\\"quoted" é', "lr": 1e-4, "frames": 16, "resume": False, "epochs": None,
              "fps": 8.0}
    assert tomllib.loads(dumps_toml(values)) == {k: v for k, v in values.items() if v is not None}
    assert latest_run(tmp_path / "nothing") is None
    for index, name in enumerate(["train-a", "train-b", "unfinished"]):
        (tmp_path / name).mkdir()
        if name != "unfinished":
            (tmp_path / name / "motion.safetensors").write_bytes(b"x")
            os.utime(tmp_path / name / "motion.safetensors", (1000 + index, 1000 + index))
    assert latest_run(tmp_path) == tmp_path / "train-b"
