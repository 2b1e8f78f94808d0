"""Command-line help a user reads (issue 39 item 3, issue 34 item 3): train's options in panels by config
group, PATH-like metavars, fixed choices listed, and no --no- twin for a flag that is off by default."""
from __future__ import annotations

import dataclasses

import typer
from typer.testing import CliRunner

from mocohd_cli.cli import app
from mocohd_cli.training.config import GROUPS, RESUME_KEYS, UPPER_BOUNDS, TrainConfig


def help_of(*command: str) -> str:
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.output


def test_train_help_groups_its_options_in_the_config_panels_in_order():
    text = help_of("train")
    positions = [text.index(f"─ {group} ") for group in GROUPS]
    assert positions == sorted(positions)
    latent = text[text.index("─ Latent phase "):text.index("─ Optimisation ")]
    assert "--latent-iterations" in latent and "--lr " not in latent


def test_paths_and_choices_show_what_they_take():
    text = help_of("train")
    line = lambda flag: next(l for l in text.splitlines() if l.lstrip("│ ").startswith(f"{flag} "))
    assert "PATH" in line("--checkpoint") and "PATH" in line("--data") and "DIR" in line("--out")
    assert "fp32|bf16|fp16" in line("--precision") and "auto|cpu|cuda" in line("--device")
    result = CliRunner().invoke(app, ["train", "--precision", "fp64"])
    assert result.exit_code == 2 and "fp64" in result.output


def test_no_no_twin_for_a_flag_that_is_off_by_default():
    def walk(command, path):
        yield path, command
        for name, sub in getattr(command, "commands", {}).items():
            yield from walk(sub, path + (name,))

    offered = []
    for path, command in walk(typer.main.get_command(app), ()):
        for param in getattr(command, "params", []):
            off = not param.default and "default: on" not in (param.help or "")
            if getattr(param, "is_flag", False) and param.secondary_opts and off:
                offered.append((" ".join(path), param.secondary_opts))
    assert not offered, offered


def test_every_field_declares_its_group_and_resume_and_bounds_come_from_the_fields():
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    assert all(f.metadata["group"] in GROUPS for f in fields.values())
    assert set(RESUME_KEYS) == {name for name, f in fields.items() if f.metadata.get("fixed")}
    assert {"mode", "h_dim", "seed", "latent_iterations"} <= set(RESUME_KEYS) and "lr" not in RESUME_KEYS
    assert UPPER_BOUNDS["h_dim"] == fields["h_dim"].metadata["hi"] == 8192


def _commands():
    def walk(command, path):
        yield path, command
        for name, sub in getattr(command, "commands", {}).items():
            yield from walk(sub, path + (name,))

    return list(walk(typer.main.get_command(app), ()))


PATHLIKE = {"--backbone", "--checkpoint", "--motion", "--data", "--out", "--latents", "--save-latents", "--config",
            "--labels", "--encoder", "--real", "--fake"}


def test_path_and_name_options_show_a_metavar_not_a_type():
    """Every built-in command's path-like options read PATH/FILE/DIR/NAME in its help, not <str>."""
    for path, command in _commands():
        for param in getattr(command, "params", []):
            if set(getattr(param, "opts", ())) & PATHLIKE and not getattr(param, "is_flag", False):
                assert param.metavar in {"PATH", "FILE", "DIR", "NAME"}, (" ".join(path), param.opts, param.metavar)


def test_no_option_shows_a_bare_python_type():
    """The type column says what an option takes: a metavar (CLASS, NAME=PATH, R C) or the choices, never <str>,
    <path> or <list[str]>; a flag (--help included) takes nothing and shows nothing."""
    for path, command in _commands():
        lines = help_of(*path).splitlines()
        for line in lines:
            cells = line.strip("│ ").split()
            if not cells or not cells[0].startswith("--"):
                continue
            assert not any(cell in {"<str>", "<path>", "<bool>"} or cell.startswith("<list[") for cell in cells[1:2]), \
                (" ".join(path), line)


def test_fixed_choices_are_listed_and_enforced_in_sample():
    text = help_of("sample")
    line = lambda flag: next(l for l in text.splitlines() if l.lstrip("│ ").startswith(f"{flag} "))
    assert "auto|cpu|cuda" in line("--device") and "mp4|gif|png" in line("--format")
    assert "random|const|none" in line("--noise")
    result = CliRunner().invoke(app, ["sample", "--format", "avi"])
    assert result.exit_code == 2 and "avi" in result.output


def test_sample_motion_and_transfer_backbone_say_what_happens():
    """Issue 39: `sample --motion` said "without it" twice; `transfer --backbone` named a --checkpoint transfer lacks."""
    motion = dict((p.name, p) for p in typer.main.get_command(app).commands["sample"].params)["motion"].help
    assert motion.count("ithout it") == 0 and "untrained" in motion and "latest run" in motion
    transfer = {p.name: p for p in typer.main.get_command(app).commands["transfer"].params}
    assert "--image-domain" in transfer["backbone"].help and "checkpoint)" not in transfer["backbone"].help


WITH_EXAMPLES = ["train", "transfer", "sample", "eval", "animate", "backbone-grid", "train-encoder", "convert",
                 "import-motion", "push", "demo", "zoo", "backbones", "data make", "data inspect", "data shard"]


def test_each_command_help_has_a_summary_and_an_example():
    for name in WITH_EXAMPLES:
        text = help_of(*name.split())
        summary = text.split("Usage:", 1)[1].splitlines()[2].strip()
        assert summary and summary.endswith("."), (name, summary)
        assert "Example" in text and f"mocohd {name}" in text.split("Example", 1)[1], name


def test_a_config_file_may_group_its_settings_in_tables(tmp_path):
    """Issue 34 item 3: `--config` files may hold the settings in their groups' tables; flat names stay valid."""
    import tomllib

    from mocohd_cli.infra.errors import MocohdError
    from mocohd_cli.training.config import group_key
    from mocohd_cli.training.resume import resolve_config

    file = tmp_path / "run.toml"
    file.write_text('seed = 3\n[inputs]\ndata = "videos"\n[data]\nframes = 8\n[latent-phase]\nlatent_iterations = 5\n')
    config = resolve_config({"lr": 0.001}, config_file=file)
    assert (config.seed, config.data, config.frames, config.latent_iterations, config.lr) == (3, "videos", 8, 5, 0.001)
    assert list(config.grouped()) == [group_key(g) for g in GROUPS] and config.grouped()["data"]["frames"] == 8
    for wrong in ("[data]\nlr = 1.0\n", "frames = 4\n[data]\nframes = 8\n"):
        try:
            TrainConfig.from_dict(tomllib.loads(wrong))
        except MocohdError:
            continue
        raise AssertionError(wrong)


def test_the_long_commands_group_their_options_in_panels():
    """Issue 39: sample, eval and pretrain hold 29-34 options each; their settings declare panels."""
    for command, panels in {"sample": ["Model", "Videos", "Controls", "Output", "Machine"],
                            "eval": ["Protocol", "Videos", "Machine", "Detectors and models"],
                            "pretrain": ["Data and run", "Architecture", "Schedule", "Machine and outputs"]}.items():
        text = help_of(command)
        positions = [text.index(f"─ {panel} ") for panel in panels]
        assert positions == sorted(positions), command
        default = text[text.index("─ Options "):text.index(f"─ {panels[0]} ")]
        assert "--num-videos" not in default and "--steps" not in default, command
