"""The package layout follows the pipeline: imports run one way (no cycles between
modules or between packages, every package only below the ones that use it) and no
module grows past 500 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "src" / "deploylens"
MAX_LINES = 500
# the one-way order: a package may import only packages listed before it (the root
# modules errors, dtypes, output, numerics and onnx_runtime are the base every package may use)
LAYERS = ("errors", "dtypes", "output", "numerics", "onnx_runtime", "zoo", "capture", "cost", "kernels", "analysis",
          "hardware", "bench", "predict", "calibration", "lint", "recommend", "deploy", "report", "cli")


def module_name(path: Path, root: Path = SOURCE) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str], root: Path = SOURCE) -> set[str]:
    """The deploylens modules ``path`` imports anywhere in its body (lazy imports inside
    functions count: a cycle through them is still a knot)."""
    found = set()
    me = module_name(path, root)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: up level - 1 packages from this module's own
                parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != "deploylens":
                found.add(name)
    return found - {me}


def import_graph(root: Path = SOURCE) -> dict[str, set[str]]:
    paths = [p for p in root.rglob("*.py")]
    modules = {module_name(p, root) for p in paths}
    return {module_name(p, root): imports_of(p, modules, root) for p in paths}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path that ends where it starts, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def package_of(module: str) -> str:
    return module.split(".")[1] if module.count(".") else module


def test_find_cycle_finds_a_planted_cycle_and_passes_a_chain():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_imports_of_sees_lazy_and_relative_imports(tmp_path):
    package = tmp_path / "deploylens" / "pkg"
    package.mkdir(parents=True)
    (tmp_path / "deploylens" / "__init__.py").write_text("")
    (package / "__init__.py").write_text("from .a import x\n")
    (package / "a.py").write_text("def f():\n    from deploylens.pkg import b\n")
    (package / "b.py").write_text("")
    graph = import_graph(tmp_path / "deploylens")
    assert graph["deploylens.pkg"] == {"deploylens.pkg.a"}
    assert graph["deploylens.pkg.a"] == {"deploylens.pkg", "deploylens.pkg.b"}


def test_no_import_cycle_between_modules():
    graph = import_graph()
    # a package's __init__ re-exports its modules: an import of the package from inside
    # it is an import of those modules, not a cycle through the __init__
    for name, targets in graph.items():
        graph[name] = {t for t in targets if not name.startswith(t + ".")}
    assert find_cycle(graph) is None


def test_packages_import_only_the_layers_below_them():
    upward = []
    for name, targets in import_graph().items():
        mine = package_of(name)
        if mine not in LAYERS:
            continue
        for target in targets:
            theirs = package_of(target)
            if theirs != mine and theirs in LAYERS and LAYERS.index(theirs) > LAYERS.index(mine):
                upward.append(f"{name} -> {target}")
    assert not upward, "imports against the pipeline's direction:\n" + "\n".join(sorted(upward))


def test_every_package_has_a_layer():
    packages = {package_of(module_name(p)) for p in SOURCE.rglob("*.py")} - {"deploylens", "__main__"}
    assert packages <= set(LAYERS), f"place these in LAYERS: {sorted(packages - set(LAYERS))}"


@pytest.mark.parametrize("path", sorted(SOURCE.rglob("*.py")), ids=lambda p: str(p.relative_to(SOURCE)))
def test_no_module_over_500_lines(path):
    assert len(path.read_text().splitlines()) <= MAX_LINES
