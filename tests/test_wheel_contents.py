"""The wheel builds without setuptools warnings and ships the assets, not the tests or docs (issue 39 item 5).

Built offline: --no-build-isolation uses the setuptools already in this environment.
"""
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def built_wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "--no-build-isolation", "--no-index",
         "-w", str(out), str(ROOT)],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    wheels = list(out.glob("mocohd-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0], proc.stdout + proc.stderr


def test_wheel_has_assets_and_no_tests_or_docs(built_wheel):
    wheel, _ = built_wheel
    names = zipfile.ZipFile(wheel).namelist()
    shipped = {p.relative_to(ROOT).as_posix() for p in (ROOT / "mocohd_cli" / "assets").rglob("*.safetensors")}
    assert shipped and shipped <= set(names), sorted(shipped - set(names))
    assert any(n.startswith("mocohd_plugins/stylegan2/") for n in names)
    assert not [n for n in names if n.startswith(("tests/", "docs/", "benchmarks/"))]
    assert any(n.endswith("licenses/LICENSE") for n in names)


def test_wheel_build_has_no_packaging_warnings(built_wheel):
    _, log = built_wheel
    bad = [line for line in log.splitlines()
           if ("SetuptoolsDeprecationWarning" in line or "license" in line.lower() and "deprecat" in line.lower()
               or "Package would be ignored" in line or "is absent from the `packages`" in line)]
    assert not bad, bad
