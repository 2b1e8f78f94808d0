"""Image-generator pre-training (the StyleGAN2 plugin's `mocohd pretrain`): a tiny StyleGAN2 for a
few steps on the CPU, through the Python API and the command line; `mocohd backbone-grid`;
plugin commands registered through the "mocohd.commands" entry-point group."""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file
from typer.testing import CliRunner

from mocohd_cli import load_backbone
from mocohd_cli.cli import app, register_plugin_commands
from mocohd_cli.data.domains import get_domain, make_dataset
from mocohd_cli.infra.errors import MocohdError
from mocohd_cli.infra.files import sha256_of, torch_load_safely
from mocohd_cli.infra.runs import read_toml
from mocohd_cli.models.losses import r1_penalty
from mocohd_plugins.stylegan2.pretrain import PretrainConfig, Pretrainer, compact_channels, resolve_pretrain_config

TINY = dict(size=16, style_dim=32, n_mlp=2, channels={4: 32, 8: 16, 16: 16}, batch_size=4, sample_every=2,
            checkpoint_minutes=1e6, device="cpu")
TINY_ARGS = ["--size", "16", "--style-dim", "32", "--n-mlp", "2", "--channels", "4:32,8:16,16:16", "--batch-size", "4",
             "--sample-every", "2", "--checkpoint-minutes", "1000000", "--device", "cpu"]


@pytest.fixture(scope="module")
def frames() -> torch.Tensor:
    video = get_domain("faces").video(0, 0, 8, 16).frames
    return torch.from_numpy(video).permute(0, 3, 1, 2).contiguous()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_dataset("faces", tmp_path_factory.mktemp("data") / "faces", videos=2, frames=4, size=16)


def cli(*args) -> "typer.testing.Result":
    return CliRunner().invoke(app, [str(a) for a in args])


def pretrain_cli(dataset: Path, out: Path, *extra) -> "typer.testing.Result":
    return cli("pretrain", "--data", dataset, "--out", out, *TINY_ARGS, *extra)


def logged_steps(run: Path) -> list[int]:
    return [int(m.group(1)) for line in (run / "log.txt").read_text().splitlines()
            if (m := re.match(r"\S+ \S+ step (\d+)/", line))]  # "<date> <time> step N/total losses"


def _params(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# -- the trainer ----------------------------------------------------------------------------------
def test_few_steps_finite_losses_and_ema_lags(tmp_path, frames):
    trainer = Pretrainer(PretrainConfig(steps=3, out=str(tmp_path / "run"), **TINY), frames)
    before = _params(trainer.generator)
    losses = [trainer.train_step() for _ in range(3)]
    for step in losses:
        assert np.isfinite([step.d, step.g, step.real_logits, step.fake_logits]).all()
    assert np.isfinite(losses[0].r1)  # lazy R1 runs on the first step
    after = _params(trainer.generator)
    ema = _params(trainer.ema)
    moved = [k for k in before if before[k].is_floating_point() and not torch.equal(before[k], after[k])]
    assert moved, "the generator did not train"
    assert any(not torch.equal(after[k], ema[k]) for k in moved), "the EMA should lag the generator"
    assert any(not torch.equal(before[k], ema[k]) for k in moved), "the EMA should move towards the generator"
    assert not (tmp_path / "run").exists()  # nothing is written before run()


def test_style_mixing_renders_two_codes_split_at_the_crossover(tmp_path, frames):
    trainer = Pretrainer(PretrainConfig(steps=1, out=str(tmp_path / "run"), style_mixing=1.0, **TINY), frames)
    g = trainer.generator.eval()
    z, z2 = torch.randn(2, 32, generator=torch.Generator().manual_seed(0)), torch.randn(2, 32)
    w, w2 = g.mapping(z), g.mapping(z2)
    with torch.no_grad():
        plain, other = g.render(w, g.stored_noise()), g.render(w2, g.stored_noise())
        # a code per layer, all the same, is one code
        torch.testing.assert_close(g.render(w[:, None].expand(-1, g.n_latent, -1), g.stored_noise()), plain)
        mixed = g(z, noise="const", mix=(z2, 3))
        expected = g.render(torch.stack([w] * 3 + [w2] * (g.n_latent - 3), 1), g.stored_noise())
    torch.testing.assert_close(mixed, expected)
    assert (mixed - plain).abs().mean() > 1e-3 and (mixed - other).abs().mean() > 1e-3
    with pytest.raises(ValueError, match="crossover"):
        g(z, mix=(z2, g.n_latent))
    # with --style-mixing 1 every step's images mix: the z stream holds a coin, a second z and a crossover
    draws = []
    trainer.generator.forward = lambda z, mix=None, **kw: draws.append(mix) or torch.zeros(len(z), 3, 16, 16)
    trainer.fakes(trainer.generator, z)
    assert draws[0] is not None and 1 <= draws[0][1] < g.n_latent
    with pytest.raises(MocohdError, match="--style-mixing"):
        PretrainConfig(style_mixing=1.5)


def test_export_loads_as_a_backbone(tmp_path, frames):
    trainer = Pretrainer(PretrainConfig(steps=1, out=str(tmp_path / "run"), **TINY), frames)
    path = trainer.run()
    assert path == tmp_path / "run" / "generator.safetensors"
    backbone = load_backbone(None, path)
    assert backbone.name == "stylegan2" and backbone.resolution == 16 and backbone.latent_dim == 32
    w = backbone.sample_latent(2, rng=torch.Generator().manual_seed(0))
    video = backbone.synthesize(torch.stack([w, w], 1), noise="const")
    assert video.shape == (2, 2, 3, 16, 16)
    # the export is the EMA generator
    z = torch.randn(3, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(backbone.render(backbone.mapping(z), backbone.stored_noise()),
                                   trainer.ema.render(trainer.ema.mapping(z), trainer.ema.stored_noise()))


def test_interrupt_saves_state_and_export(tmp_path, frames, monkeypatch):
    trainer = Pretrainer(PretrainConfig(steps=10, out=str(tmp_path / "run"), **TINY), frames)
    real_step = trainer.train_step

    def step_then_interrupt():
        if trainer.step == 2:
            raise KeyboardInterrupt
        return real_step()

    monkeypatch.setattr(trainer, "train_step", step_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        trainer.run()
    assert int(torch_load_safely(tmp_path / "run" / "state" / "latest.pt")["step"]) == 2
    assert load_backbone(None, tmp_path / "run" / "generator.safetensors").resolution == 16
    assert "interrupted at step 2" in (tmp_path / "run" / "log.txt").read_text()


def test_r1_penalty_matches_a_known_gradient():
    x = torch.randn(3, 2, requires_grad=True)
    logits = (x * torch.tensor([3.0, 4.0])).sum(1)  # gradient (3, 4) per sample: squared norm 25
    assert r1_penalty(logits, x).item() == pytest.approx(25.0)


def test_config_defaults_and_toml_values():
    config = PretrainConfig()
    assert config.channels == compact_channels(64) and config.channels[4] == 128 and config.channels[64] == 32
    assert config.d_channels == config.channels
    assert config.style_mixing == 0.9  # StyleGAN2's
    assert config.r1_gamma == 1.0 and config.ema_kimg == pytest.approx(16 * 10 / 32)
    assert PretrainConfig(r1_gamma=-1, batch_size=8).r1_gamma == pytest.approx(0.0002 * 64 ** 2 / 8)
    values = config.to_dict()
    assert values["channels"] == ",".join(f"{res}:{width}" for res, width in compact_channels(64).items())
    assert PretrainConfig.from_dict(values) == config
    assert PretrainConfig(channels="4:32,8:16,16:16", size=16).channels == {4: 32, 8: 16, 16: 16}
    assert PretrainConfig(channels=["4:32", "8:16", "16:16"], size=16).channels == {4: 32, 8: 16, 16: 16}
    with pytest.raises(MocohdError, match="power of two"):
        PretrainConfig(size=48)
    with pytest.raises(MocohdError, match="no width for 16 px"):
        PretrainConfig(size=16, channels="4:32,8:16")
    with pytest.raises(MocohdError, match="unknown pre-training option"):
        PretrainConfig.from_dict({"colour": 1})


# -- the command line -------------------------------------------------------------------------------
def test_pretrain_writes_the_run_folder_layout(tmp_path, dataset):
    run = tmp_path / "run"
    result = pretrain_cli(dataset, run, "--steps", "3", "--no-mirror")
    assert result.exit_code == 0, result.output
    assert "use it with --checkpoint" in result.output
    saved = read_toml(run / "config.toml")
    assert saved["channels"] == "4:32,8:16,16:16" and saved["d_channels"] == "4:32,8:16,16:16"
    assert saved["steps"] == 3 and saved["mirror"] is False and saved["data"] == str(dataset)
    assert saved["out"] == str(run) and "resume" not in saved
    assert PretrainConfig.from_dict(saved).style_dim == 32
    state = torch_load_safely(run / "state" / "latest.pt")  # weights_only=True loads it
    assert int(state["step"]) == 3 and state["config"]["size"] == 16
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["step_2.png", "step_3.png"]
    assert np.asarray(Image.open(run / "samples" / "step_2.png")).shape == (96, 96, 3)  # 6 x 6 grid of 16 px
    log = (run / "log.txt").read_text()
    assert "started at step 0/3" in log and "finished at step 3" in log
    assert logged_steps(run) == [2, 3]
    backbone = load_backbone(None, run / "generator.safetensors")
    assert backbone.resolution == 16 and backbone.latent_dim == 32


def test_resume_continues_exactly(tmp_path, dataset):
    assert pretrain_cli(dataset, tmp_path / "a", "--steps", "4").exit_code == 0
    first = pretrain_cli(dataset, tmp_path / "b", "--steps", "2")
    assert first.exit_code == 0, first.output
    assert int(torch_load_safely(tmp_path / "b" / "state" / "latest.pt")["step"]) == 2
    # --resume takes the run's settings from its config.toml: only the new step count is given
    resumed = cli("pretrain", "--resume", "--out", tmp_path / "b", "--steps", "4")
    assert resumed.exit_code == 0, resumed.output
    assert int(torch_load_safely(tmp_path / "b" / "state" / "latest.pt")["step"]) == 4
    straight, continued = load_file(tmp_path / "a" / "generator.safetensors"), load_file(
        tmp_path / "b" / "generator.safetensors")
    assert straight.keys() == continued.keys()
    for name, value in straight.items():
        torch.testing.assert_close(continued[name], value, rtol=1e-5, atol=1e-6)
    assert logged_steps(tmp_path / "b") == [2, 4]
    assert "resumed at step 2/4" in (tmp_path / "b" / "log.txt").read_text()
    assert (tmp_path / "b" / "samples" / "step_4.png").exists()


def test_minutes_stops_early_with_a_resumable_state(tmp_path, dataset):
    run = tmp_path / "run"
    stopped = pretrain_cli(dataset, run, "--steps", "5", "--minutes", "1e-9")  # the budget ends after one step
    assert stopped.exit_code == 0, stopped.output
    assert int(torch_load_safely(run / "state" / "latest.pt")["step"]) == 1
    assert load_backbone(None, run / "generator.safetensors").resolution == 16
    log = (run / "log.txt").read_text()
    assert "stopped at step 1/5 after --minutes" in log and "finished" not in log
    resumed = cli("pretrain", "--resume", "--out", run, "--minutes", "0")
    assert resumed.exit_code == 0, resumed.output
    assert int(torch_load_safely(run / "state" / "latest.pt")["step"]) == 5
    assert "finished at step 5" in (run / "log.txt").read_text()
    negative = pretrain_cli(dataset, tmp_path / "other", "--minutes", "-1")
    assert negative.exit_code == 2 and "--minutes must be >= 0" in negative.output


def test_resume_rules(tmp_path, dataset):
    run = tmp_path / "run"
    no_state = cli("pretrain", "--resume", "--out", run, "--data", dataset, *TINY_ARGS)
    assert no_state.exit_code == 2 and "no training state" in no_state.output
    assert not run.exists()
    assert pretrain_cli(dataset, run, "--steps", "1").exit_code == 0
    again = pretrain_cli(dataset, run, "--steps", "2")
    assert again.exit_code == 2 and "already holds" in again.output and "--resume" in again.output
    other = cli("pretrain", "--resume", "--out", run, "--steps", "2", "--style-dim", "16")
    assert other.exit_code == 2 and "different architecture (style_dim)" in other.output
    assert int(torch_load_safely(run / "state" / "latest.pt")["step"]) == 1


def test_resume_without_out_finds_the_latest_run_under_the_runs_root(tmp_path, dataset):
    root = tmp_path / "runs"
    assert cli("pretrain", "--data", dataset, "--runs-root", root, *TINY_ARGS, "--steps", "1").exit_code == 0
    (run,) = root.iterdir()
    assert run.name.startswith("backbone-")
    result = cli("pretrain", "--resume", "--runs-root", root, "--steps", "2")
    assert result.exit_code == 0, result.output
    assert int(torch_load_safely(run / "state" / "latest.pt")["step"]) == 2
    empty = cli("pretrain", "--resume", "--runs-root", tmp_path / "nothing", "--data", dataset)
    assert empty.exit_code == 2 and "no run with a training state" in empty.output


def test_config_file_is_layered_under_the_options(tmp_path, dataset):
    config = tmp_path / "pretrain.toml"
    config.write_text(f'data = "{dataset.as_posix()}"\nsize = 16\nstyle-dim = 32\nn_mlp = 2\n'
                      'channels = "4:32,8:16,16:16"\nbatch_size = 4\nsteps = 5\nlr = 0.001\ndevice = "cpu"\n')
    run = tmp_path / "run"
    result = cli("pretrain", "--config", config, "--out", run, "--steps", "1")
    assert result.exit_code == 0, result.output
    saved = read_toml(run / "config.toml")
    assert saved["steps"] == 1 and saved["lr"] == 0.001 and saved["style_dim"] == 32
    bad = tmp_path / "bad.toml"
    bad.write_text("colour = 1\n")
    result = cli("pretrain", "--config", bad, "--out", tmp_path / "other")
    assert result.exit_code == 2 and "unknown pre-training option 'colour'" in result.output
    # the same layering from Python
    assert resolve_pretrain_config({"steps": 7, "lr": None}, config_file=config).steps == 7


def test_pretrain_needs_data(tmp_path):
    result = cli("pretrain", "--out", tmp_path / "run", *TINY_ARGS)
    assert result.exit_code == 2 and "--data" in result.output


def test_backbone_grid_command(tmp_path, frames):
    checkpoint = Pretrainer(PretrainConfig(steps=1, out=str(tmp_path / "run"), **TINY), frames).run()
    out = tmp_path / "grid.png"
    result = cli("backbone-grid", checkpoint, "--out", out, "-n", "6", "--scale", "2", "--device", "cpu")
    assert result.exit_code == 0, result.output
    grid = np.asarray(Image.open(out))
    assert grid.shape == (2 * 16 * 2, 3 * 16 * 2, 3)  # 6 images: 3 per row, 2 rows, enlarged twice
    again = tmp_path / "again.png"
    assert cli("backbone-grid", checkpoint, "--out", again, "-n", "6", "--scale", "2", "--device", "cpu",
               ).exit_code == 0
    assert again.read_bytes() == out.read_bytes()  # seeded
    padded = tmp_path / "padded.png"
    assert cli("backbone-grid", checkpoint, "--out", padded, "-n", "4", "--nrow", "4", "--padding", "2",
               "--device", "cpu").exit_code == 0
    assert np.asarray(Image.open(padded)).shape == (16 + 4, 4 * 18 + 2, 3)
    missing = cli("backbone-grid", checkpoint)
    assert missing.exit_code == 2 and "--out" in missing.output


# -- plugin commands --------------------------------------------------------------------------------
GOOD_PLUGIN = '''
def register(app):
    @app.command("hello")
    def hello(name: str = "world"):
        print(f"hello {name}")
'''


@pytest.fixture
def fake_command_plugins(tmp_path, monkeypatch):
    """Two installed distributions adding commands: one works, one fails to import."""
    (tmp_path / "good_commands.py").write_text(GOOD_PLUGIN)
    (tmp_path / "broken_commands.py").write_text("raise ImportError('needs a library that is not installed')\n")
    for dist, entry in (("gooddist", "hello = good_commands:register"),
                        ("brokendist", "broken = broken_commands:register")):
        info = tmp_path / f"{dist}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
        (info / "entry_points.txt").write_text(f"[mocohd.commands]\n{entry}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_plugin_commands_load_and_a_broken_one_only_warns(fake_command_plugins, caplog):
    target = typer.Typer()

    @target.callback()
    def main() -> None:
        pass

    loaded = register_plugin_commands(target)
    assert "hello" in loaded and "pretrain" in loaded and "broken" not in loaded
    warning = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]  # logged (the CLI renders it)
    assert len(warning) == 1 and "'broken'" in warning[0] and "not installed" in warning[0]
    result = CliRunner().invoke(target, ["hello", "--name", "plugins"])
    assert result.exit_code == 0 and "hello plugins" in result.output
    assert CliRunner().invoke(target, ["pretrain", "--help"]).exit_code == 0


def test_pretrain_is_the_plugins_command():
    # registered by mocohd_plugins.stylegan2.command through the entry point, not by a core module
    # (tests/test_layout.py checks that the core never imports mocohd_plugins)
    assert "pretrain" in [c.name for c in app.registered_commands]
    assert importlib.util.find_spec("mocohd_cli.commands.pretrain") is None


def test_init_fine_tunes_from_a_checkpoint_with_its_architecture(tmp_path, dataset):
    from mocohd_plugins.stylegan2.pretrain import load_init_generator

    first = tmp_path / "first"
    assert pretrain_cli(dataset, first, "--steps", "2").exit_code == 0
    start = first / "generator.safetensors"
    # only the schedule is given: size, widths, W size and mapping depth come from the checkpoint
    run = tmp_path / "tuned"
    config = resolve_pretrain_config({"data": str(dataset), "out": str(run), "init": str(start), "steps": 1,
                                      "batch_size": 4, "checkpoint_minutes": 1e6, "device": "cpu"})
    assert (config.size, config.style_dim, config.n_mlp) == (16, 32, 2)
    assert config.channels == {4: 32, 8: 16, 16: 16} == config.d_channels
    trainer = Pretrainer(config)
    expected = load_init_generator(start).state_dict()
    for model in (trainer.generator, trainer.ema):  # both start as the checkpoint, weight for weight
        assert model.state_dict().keys() == expected.keys()
        assert all(torch.equal(value, expected[name]) for name, value in model.state_dict().items())
    trainer.run()
    after = load_file(run / "generator.safetensors")
    assert not torch.equal(after["conv1.conv.weight"], expected["conv1.conv.weight"])  # it trained from there
    assert safe_open(str(run / "generator.safetensors"), "pt").metadata()["pretrain_init_sha256"] == sha256_of(start)
    # a resumed run continues from its state (not from --init again) and keeps the record of where it started
    resumed = cli("pretrain", "--resume", "--out", run, "--steps", "2")
    assert resumed.exit_code == 0, resumed.output
    assert int(torch_load_safely(run / "state" / "latest.pt")["step"]) == 2
    assert safe_open(str(run / "generator.safetensors"), "pt").metadata()["pretrain_init_sha256"] == sha256_of(start)


def test_init_refuses_another_architecture_and_non_checkpoints(tmp_path, dataset):
    first = tmp_path / "first"
    assert pretrain_cli(dataset, first, "--steps", "1").exit_code == 0
    other = cli("pretrain", "--data", dataset, "--out", tmp_path / "a", *TINY_ARGS, "--style-dim", "16",
                "--init", first / "generator.safetensors")
    assert other.exit_code == 2 and "--init" in other.output and "style_dim" in other.output
    assert not (tmp_path / "a" / "state").exists()
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a checkpoint")
    bad = cli("pretrain", "--data", dataset, "--out", tmp_path / "b", "--init", junk, "--device", "cpu")
    assert bad.exit_code == 2 and "junk.safetensors" in bad.output
