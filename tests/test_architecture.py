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
# modules errors, dtypes, output, numerics and onnx_runtime are the base every package may
# use; "deploylens" is the root package's public facade, above all but the command line)
LAYERS = ("errors", "dtypes", "output", "numerics", "onnx_runtime", "zoo", "capture", "cost", "kernels", "analysis",
          "hardware", "predict", "bench", "calibration", "lint", "recommend", "deploy", "studies", "report", "deploylens",
          "cli")


def module_name(path: Path, root: Path = SOURCE) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def ancestors(module: str) -> set[str]:
    """The packages above ``module`` (``a.b.c``: ``a`` and ``a.b``)."""
    parts = module.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def imports_of(path: Path, modules: set[str], root: Path = SOURCE) -> set[str]:
    """The deploylens modules that importing ``path`` runs or reads from, as Python does
    it (lazy imports inside functions count: a cycle through them is still a knot):
    ``import a.b.c`` runs ``a``, ``a.b`` and ``a.b.c``; ``from p import n`` runs the
    module ``p.n`` where there is one, else reads ``n`` from ``p``'s ``__init__``, which
    must then have run already, even when ``p`` is a package above the importer. Only the
    packages above the importer, which are being imported already, are not run again."""
    me = module_name(path, root)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    mine = ancestors(me)
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found |= ({alias.name} | ancestors(alias.name)) - mine
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: up level - 1 packages from this module's own
                parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            found |= ancestors(base) - mine
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return {name for name in found if name in modules} - {me}


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
    """The layer of a module: its package under deploylens (or its own name for a root module)."""
    return module.split(".")[1] if module.count(".") else module


def test_find_cycle_finds_a_planted_cycle_and_passes_a_chain():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def planted(tmp_path: Path, files: dict[str, str]) -> dict[str, set[str]]:
    """The import graph of a package ``deploylens`` made of ``files`` (path: source)."""
    for name, text in {"__init__.py": "", **files}.items():
        path = tmp_path / "deploylens" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return import_graph(tmp_path / "deploylens")


def test_imports_of_sees_lazy_and_relative_imports(tmp_path):
    graph = planted(tmp_path, {"pkg/__init__.py": "from .a import x\n",
                               "pkg/a.py": "def f():\n    from deploylens.pkg import b\n", "pkg/b.py": ""})
    assert graph["deploylens.pkg"] == {"deploylens.pkg.a"}
    assert graph["deploylens.pkg.a"] == {"deploylens.pkg.b"}  # its own package is being imported already


def test_a_name_read_from_a_package_above_that_imports_the_reader_is_a_cycle(tmp_path):
    # pkg/__init__ imports api, api imports core, core reads P from pkg's __init__: not defined yet
    graph = planted(tmp_path, {"pkg/__init__.py": "from deploylens.pkg.api import P\n",
                               "pkg/api.py": "from deploylens.pkg.core import Q\nP = 1\n",
                               "pkg/core.py": "from deploylens.pkg import P\nQ = 2\n"})
    assert find_cycle(graph) == ["deploylens.pkg", "deploylens.pkg.api", "deploylens.pkg.core", "deploylens.pkg"]


def test_a_cycle_through_a_packages_init_is_found(tmp_path):
    # x imports sub.y, which runs sub/__init__, which imports z, which imports x
    graph = planted(tmp_path, {"x.py": "import deploylens.sub.y as y\n", "sub/__init__.py": "from . import z\n",
                               "sub/y.py": "", "sub/z.py": "def f():\n    from deploylens import x\n"})
    assert find_cycle(graph) is not None and "deploylens.sub" in find_cycle(graph)


def test_a_name_read_from_the_root_package_is_an_edge_to_it(tmp_path):
    graph = planted(tmp_path, {"__init__.py": "from deploylens.top import analyze\n", "top.py": "analyze = 1\n",
                               "low.py": "def f():\n    from deploylens import analyze\n"})
    assert graph["deploylens.low"] == {"deploylens"}


def test_no_import_cycle_between_modules():
    assert find_cycle(import_graph()) is None


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
    packages = {package_of(module_name(p)) for p in SOURCE.rglob("*.py")} - {"__main__"}
    assert packages <= set(LAYERS), f"place these in LAYERS: {sorted(packages - set(LAYERS))}"


@pytest.mark.parametrize("path", sorted(SOURCE.rglob("*.py")), ids=lambda p: str(p.relative_to(SOURCE)))
def test_no_module_over_500_lines(path):
    assert len(path.read_text().splitlines()) <= MAX_LINES


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for target in graph.get(todo.pop(), ()):
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def test_the_predictor_core_takes_a_profile_kernels_and_a_device_model_and_nothing_else():
    # it never measures, calibrates, exports or runs a model: none of that is even imported
    below = reachable(import_graph(), "deploylens.predict.core")
    doers = {"deploylens.onnx_runtime", "deploylens.analysis.api", "deploylens.kernels.onnxruntime_graph",
             "deploylens.capture.torch_capture", "deploylens.capture.onnx_capture", "deploylens.capture.loader"}
    forbidden = {m for m in below if package_of(m) in ("bench", "calibration") or m in doers}
    assert not forbidden
