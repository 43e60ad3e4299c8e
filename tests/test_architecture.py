"""The shape of the package: small modules, imports that only point down, no cycles."""

from __future__ import annotations

import ast
from pathlib import Path

import happyrobot_async as hr

PACKAGE = Path(hr.__file__).parent
MAX_LINES = 300


def _modules() -> dict[str, Path]:
    """Every module of the package by dotted name (`happyrobot_async.cli._batch`)."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Modules of the package that `name` imports anywhere: top level, functions, TYPE_CHECKING."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            module = node.module or ""
            stem = (base + "." + module).strip(".") if node.level else module
            targets.add(stem)
            targets |= {f"{stem}.{alias.name}" for alias in node.names}
    return {target for target in targets if target in known and target != name}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph = {name: _imports(name, path, set(modules)) for name, path in modules.items()}
    # a package's __init__ re-exporting its own submodules is not an upward import
    return {
        name: {t for t in targets if not t.startswith(name + ".")}
        for name, targets in graph.items()
    }


def test_no_import_cycles() -> None:
    """No module imports (even under TYPE_CHECKING) one that imports it back."""
    graph = _graph()
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(name: str, trail: list[str]) -> None:
        state[name] = 1
        for target in sorted(graph[name]):
            if state.get(target) == 1:
                cycles.append([*trail[trail.index(target) :], target])
            elif target not in state:
                visit(target, [*trail, target])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == []


def test_errors_is_the_lowest_layer() -> None:
    """errors.py imports nothing else of the package, so every layer may raise its errors."""
    assert _graph()["happyrobot_async.errors"] == set()


def test_the_core_never_imports_the_cli_or_the_simulator() -> None:
    """Only the command line may import the simulator, never the SDK's own layers."""
    for name, targets in _graph().items():
        if _within(name, "cli") or _within(name, "testing") or name == "happyrobot_async.__main__":
            continue  # `python -m happyrobot_async` is the command line
        assert not {t for t in targets if _within(t, "cli") or _within(t, "testing")}, name


def _within(name: str, subpackage: str) -> bool:
    prefix = f"happyrobot_async.{subpackage}"
    return name == prefix or name.startswith(prefix + ".")


def test_modules_are_small() -> None:
    """No module outside testing/ is longer than 300 lines."""
    long = {
        name: len(path.read_text().splitlines())
        for name, path in _modules().items()
        if not _within(name, "testing")
    }
    assert {name: n for name, n in long.items() if n > MAX_LINES} == {}


def test_public_names_are_exported_once() -> None:
    """The package exports what the modules' `__all__` list, and nothing it does not define."""
    from_modules = set()
    for name in _modules():
        module = __import__(name, fromlist=["__all__"])
        if name != "happyrobot_async" and not _within(name, "testing"):
            from_modules |= set(getattr(module, "__all__", ()))
    assert from_modules <= set(hr.__all__) | {"main", "live_progress"}  # the cli's own
    assert set(hr.__all__) - {"__version__"} <= from_modules
    assert "wait_for_model" not in hr.__all__ and "watch_models" not in hr.__all__
