"""The package layout that docs/architecture.md describes, checked on the source tree: no
import cycles between modules (imports inside functions included), each concern importing only
the concerns below it, few modules at the top, no private pandas API."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import hts_fast
import pytest

_SOURCE = Path(__file__).resolve().parents[1] / "python" / "hts_fast"
#: The package's Python files: the source tree's, or the installed package's when the tests
#: run against a wheel (cibuildwheel copies only tests/ beside them).
PACKAGE = _SOURCE if _SOURCE.is_dir() else Path(hts_fast.__file__).resolve().parent

#: Each concern and the concerns it may import ("" is the top level's private helpers:
#: _arrays, _threads, _lapack, _core_loader, _timing, _progress and the compiled _core).
LAYERS = {
    "loaders": {""},
    "fits": {""},
    "spectra": {"", "fits"},
    "analysis": {"", "fits", "spectra", "loaders"},
    "zoo": {"", "fits", "spectra", "loaders", "analysis"},
    # the WeightWatcher 0.7.7 drop-in, a public facade over everything below
    "weightwatcher": {"", "fits", "spectra", "loaders", "analysis", "zoo"},
    # the layer-wise schedules (TempBalance, AlphaDecay, AlphaPruning ratios) are built on
    # the engine, beside zoo: they read models through torch, never checkpoints or the zoo
    "schedules": {"", "fits", "spectra", "analysis"},
}
#: Top-level modules every concern may use: the boundary with the compiled core, timing and
#: progress bars.
HELPERS = {
    "_arrays",
    "_threads",
    "_lapack",
    "_core_loader",
    "_timing",
    "_progress",
    "_core",
    "_cuda",
}
#: The compiled extension modules (no Python source; they import nothing of the package).
COMPILED = ("hts_fast._core", "hts_fast._cuda")


def _modules() -> dict[str, Path]:
    """Dotted name -> file of every module of the package (packages by their __init__)."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that ``name`` imports anywhere in its file (inside functions and
    TYPE_CHECKING blocks too)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            # "from pkg import sub" imports the module pkg.sub; "from mod import name" mod
            found = [f"{module}.{a.name}" if f"{module}.{a.name}" in modules else module
                     for a in node.names]  # fmt: skip
        else:
            continue
        targets.update(t for t in found if t in modules and t != name)
    return targets


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    every = {**modules, **dict.fromkeys(COMPILED)}
    graph = {name: _imports(name, path, every) for name, path in modules.items()}
    return {**graph, **{name: set() for name in COMPILED}}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _concern(module: str) -> str | None:
    """The concern a module belongs to: its subpackage, "" for a top-level helper, None for
    the public top level (hts_fast, cli, _build_info, ...), which may import anything."""
    parts = module.split(".")
    if len(parts) > 2 or (len(parts) == 2 and parts[1] in LAYERS):
        return parts[1]
    return "" if len(parts) == 2 and parts[1] in HELPERS else None


def test_no_import_cycles():
    assert _cycles(_graph()) == []


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_each_concern_imports_only_the_concerns_below_it():
    wrong = []
    for module, targets in _graph().items():
        concern = _concern(module)
        if concern is None:
            continue
        allowed = LAYERS.get(concern, set()) | {concern}
        wrong += [f"{module} -> {t}" for t in sorted(targets) if _concern(t) not in allowed]
    assert wrong == []


def test_few_modules_at_the_top():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= 16, top
    concerns = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file())
    assert concerns == sorted(LAYERS)


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: p.name)
def test_no_private_pandas_api(path):
    text = path.read_text()
    private = re.findall(r"\._from_\w+|\bp(?:d|andas)\.(?:core|_libs)\b", text)
    assert private == [], f"{path.relative_to(PACKAGE)}: {private}"
