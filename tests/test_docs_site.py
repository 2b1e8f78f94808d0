"""The documentation site (mkdocs.yml, docs/): the CLI reference generated from the app lists every
command and option, and `mkdocs build --strict` passes (a broken link, a missing page or a page left
out of the nav fails it). The build is skipped only where mkdocs is not installed; CI installs the
`docs` extra (.ci/install), so there it runs."""
from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _hook():
    spec = importlib.util.spec_from_file_location("cli_reference_hook", ROOT / "docs" / "hooks" / "cli_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_reference_lists_every_command_and_option():
    hook = _hook()
    page = hook.cli_reference()
    commands = list(hook.walk(hook.root_command(), ("mocohd",)))
    names = {" ".join(path) for path, _, _ in commands}
    assert {"mocohd", "mocohd train", "mocohd transfer", "mocohd sample", "mocohd eval", "mocohd eval stats",
            "mocohd animate", "mocohd pretrain", "mocohd zoo list", "mocohd data make"} <= names
    for path, command, ctx in commands:
        name = " ".join(path)
        assert f"`{name}`" in page, f"{name} is not in the CLI reference"
        section = page.split(f"`{name}`\n", 1)[1]
        following = [f"`{' '.join(p)}`\n" for p, _, _ in commands if " ".join(p) != name]
        for heading in following:  # the command's own section only
            section = section.split(heading, 1)[0]
        for param in command.get_params(ctx):
            if getattr(param, "hidden", False):
                continue
            for opt in [*getattr(param, "opts", []), *getattr(param, "secondary_opts", [])]:
                if opt.startswith("-"):
                    assert opt in section, f"{name}: {opt} is not in the CLI reference"
            if param.param_type_name == "argument":  # listed under its metavar (NAME, DATA, ...), as --help shows it
                shown = param.get_help_record(ctx)[0]
                assert f"`{shown}" in section, f"{name}: argument {shown} is not in the CLI reference"


def test_mkdocs_build_strict(tmp_path):
    pytest.importorskip("mkdocs", reason="the docs extra is not installed (pip install -e '.[docs]')")
    pytest.importorskip("material", reason="the docs extra is not installed (pip install -e '.[docs]')")
    pytest.importorskip("mkdocstrings", reason="the docs extra is not installed (pip install -e '.[docs]')")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    site = tmp_path / "site"
    assert (site / "reference" / "cli" / "index.html").is_file()
    assert (site / "changelog" / "index.html").is_file()
    html = "".join(p.read_text(encoding="utf-8") for p in site.rglob("*.html"))
    assert "fonts.googleapis.com" not in html  # theme fonts: the system's, nothing fetched
    # each API reference page renders every public name of the module it documents
    documented = {}
    for page in (ROOT / "docs" / "reference").glob("*.md"):
        for module_name in re.findall(r"^::: (\S+)", page.read_text(encoding="utf-8"), re.M):
            documented[module_name] = site / "reference" / page.stem / "index.html"
    assert {"mocohd_cli.plugin_api", "mocohd_cli"} <= set(documented)
    for module_name, built in documented.items():
        api = built.read_text(encoding="utf-8")
        for name in importlib.import_module(module_name).__all__:
            if not name.startswith("_"):
                assert f'id="{module_name}.{name}"' in api, f"{module_name}.{name} is not in {built}"


def test_readme_is_short_and_its_links_exist():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 150
    assert "bash .ci/install && .venv/bin/mocohd train && .venv/bin/mocohd sample" in text
    assert "bash .ci/install && .venv/bin/python -m pytest -q" in text
    assert not re.search(r"\b20\d\d-\d\d-\d\d\b", text), "no dates in the README: history goes to CHANGELOG.md"
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
        if "://" not in target:
            assert (ROOT / target).exists(), f"README links to {target}, which does not exist"
