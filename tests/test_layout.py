"""The package's layering (docs/architecture.md): each layer imports only the layers before it, and the
core never imports the built-in plugins (they are plugins like any other)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mocohd_cli"
LAYERS = ["infra", "models", "data", "evaluation", "training", "workflows", "commands"]


def imported_modules(path: Path) -> set[str]:
    """Absolute names of the mocohd modules a file imports (relative imports resolved)."""
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names.add(target)
            names.update(f"{target}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {n for n in names if n.startswith(("mocohd_cli", "mocohd_plugins"))}


def layer_of(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else None


FILES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_layers_import_only_earlier_layers(path):
    own = layer_of(".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts))
    for name in imported_modules(path):
        assert not name.startswith("mocohd_plugins"), f"{path.name} imports the plugin package ({name})"
        other = layer_of(name)
        if own is not None and other is not None:
            assert other <= own, f"{path.relative_to(PACKAGE)} ({LAYERS[own]}) imports {name} ({LAYERS[other]})"


def test_the_check_sees_relative_imports(tmp_path):
    """Guard the guard: a relative import from a later layer is found and attributed."""
    names = imported_modules(PACKAGE / "training" / "trainer.py")
    assert "mocohd_cli.models.backbone" in names and layer_of("mocohd_cli.models.backbone") == 1


def test_every_package_is_in_the_distribution():
    """pyproject lists packages explicitly: a new sub-package left out would be missing from wheels
    (the editable install used in development would not notice)."""
    import tomllib

    root = PACKAGE.parent
    listed = set(tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(root).parts) for p in PACKAGE.rglob("__init__.py")}
    found |= {"mocohd_plugins" + "".join("." + part for part in p.parent.relative_to(root / "plugins").parts)
              for p in (root / "plugins").rglob("__init__.py")}
    # folders of package data only (the shipped weights): setuptools warns unless they are listed too
    found |= {".".join(d.relative_to(root).parts) for d in PACKAGE.rglob("*")
              if d.is_dir() and d.name != "__pycache__" and not any(d.glob("*.py"))
              and any(f.is_file() for f in d.iterdir())}
    assert found == listed


PLUGIN_FILES = sorted([*(PACKAGE.parent / "plugins").rglob("*.py"),
                       *(PACKAGE.parent / "examples" / "custom_backbone").rglob("*.py")])


def plugin_imports(path: Path) -> set[str]:
    """The mocohd_cli modules a plugin file imports (its own package's relative imports left out)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").startswith("mocohd_cli"):
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names if alias.name.startswith("mocohd_cli"))
    return names


@pytest.mark.parametrize("path", PLUGIN_FILES, ids=lambda p: str(p.relative_to(PACKAGE.parent)))
def test_plugins_import_only_the_public_plugin_api(path):
    """The built-in plugins and the example plugin are plugins like any other: mocohd_cli.plugin_api is all
    of mocohd they may use, so what they need is what a third-party plugin can rely on."""
    assert plugin_imports(path) <= {"mocohd_cli.plugin_api"}, f"{path.name} imports {plugin_imports(path)}"


def test_plugin_api_names_exist_and_are_listed():
    import mocohd_cli.plugin_api as api

    assert len(api.__all__) == len(set(api.__all__))
    missing = [name for name in api.__all__ if not hasattr(api, name)]
    assert not missing, missing
    public = {name for name in vars(api) if not name.startswith("_") and name != "annotations"}
    assert public == set(api.__all__), public ^ set(api.__all__)


def import_graph(inside_functions: bool) -> dict[str, set[str]]:
    """mocohd_cli module -> the mocohd_cli modules it imports (at module level, or anywhere)."""
    modules = {}
    for path in FILES:
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        modules[name.removesuffix(".__init__")] = path
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        tree = ast.parse(path.read_text(encoding="utf-8"))
        targets = set()
        for node in (ast.walk(tree) if inside_functions else tree.body):
            if isinstance(node, ast.ImportFrom):
                base = (".".join(package.split(".")[: len(package.split(".")) - node.level + 1]
                                 + ([node.module] if node.module else [])) if node.level else node.module or "")
                targets.update(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names)
            elif isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def cycle_through(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of `graph` (its modules in order), or None."""
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for other in sorted(graph[node]):
            if state.get(other) == 1:
                return path[path.index(other):] + [other]
            if other not in state and (found := visit(other)):
                return found
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycles_at_module_level():
    assert cycle_through(import_graph(inside_functions=False)) is None


ARGV_READERS = {"cli.py", "app.py", "__main__.py", "infra/provenance.py"}  # the CLI, and the provenance record


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_nothing_below_the_cli_reads_sys_argv(path):
    if str(path.relative_to(PACKAGE)) in ARGV_READERS:
        return
    reads = [node.lineno for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
             if isinstance(node, ast.Attribute) and node.attr == "argv"
             and isinstance(node.value, ast.Name) and node.value.id == "sys"]
    assert not reads, f"{path.relative_to(PACKAGE)} reads sys.argv (line {reads[0]}): pass the value down instead"


def test_the_version_is_the_distributions():
    import tomllib

    from mocohd_cli import __version__

    project = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["version"] == __version__


def test_no_import_cycle_even_through_imports_inside_functions():
    assert cycle_through(import_graph(inside_functions=True)) is None, cycle_through(import_graph(inside_functions=True))


# What may still be imported inside a function: libraries that are heavy to load (the CLI starts without them)
# or optional (an extra), and torch where it must load after mocohd_cli/infra/threads.py set OpenMP up.
LAZY_LIBRARIES = {"timm", "torchvision", "av", "imageio", "tensorboard", "torchmetrics", "huggingface_hub",
                  "webdataset", "gradio", "typer"}
LAZY_TORCH = {"mocohd_cli/infra/threads.py"}


@pytest.mark.parametrize("path", [*FILES, *PLUGIN_FILES], ids=lambda p: str(p.relative_to(PACKAGE.parent)))
def test_imports_inside_functions_are_only_heavy_or_optional_libraries(path):
    """Issue 34: a mocohd module or a light library is imported at the top, where a reader sees what the module
    depends on; only LAZY_LIBRARIES wait for the function that needs them."""
    relative = str(path.relative_to(PACKAGE.parent))
    for function in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(function):
            if isinstance(node, ast.ImportFrom):
                roots = [(node.module or "").split(".")[0] if not node.level else "."]
                full = [node.module or ""]
            elif isinstance(node, ast.Import):
                roots, full = [a.name.split(".")[0] for a in node.names], [a.name for a in node.names]
            else:
                continue
            for root, name in zip(roots, full):
                allowed = (root in LAZY_LIBRARIES or name.startswith("torch.utils.tensorboard")
                           or (root == "torch" and relative in LAZY_TORCH))
                assert allowed, f"{relative}:{node.lineno} imports {name or '.'} inside {function.name}()"
