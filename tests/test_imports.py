"""The package's imports, read with `ast` (lazy imports inside functions and `TYPE_CHECKING`
blocks included): no import circle, and no private name taken from another module."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).parents[1] / "src"
ROOT = SRC / "ocrnet"


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in ROOT.rglob("*.py")}


def imports(name: str) -> Iterator[tuple[str, str | None, int]]:
    """(imported module, imported name or None, line) for every import in module `name`."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                yield base, alias.name, node.lineno


def edges(name: str) -> set[str]:
    """The package modules `name` imports: `from pkg import sub` counts as `pkg.sub`."""
    out = set()
    for module, what, _ in imports(name):
        target = f"{module}.{what}" if what and f"{module}.{what}" in MODULES else module
        if target in MODULES and target != name:
            out.add(target)
    return out


def cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    graph = {m: edges(m) for m in MODULES}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_circles() -> None:
    assert cycles() == []


def test_no_private_name_imported_from_another_module() -> None:
    """`from x import _y` only where `_y` is a private submodule of the importer's own package."""
    bad = []
    for name in MODULES:
        package = name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]
        for module, what, line in imports(name):
            if not what or not what.startswith("_") or what.startswith("__"):
                continue
            if not module.startswith("ocrnet"):
                continue
            if f"{module}.{what}" in MODULES and module == package:
                continue  # a package's own private submodule
            bad.append(f"{name}:{line} imports {what} from {module}")
    assert bad == []


def test_the_walker_sees_lazy_imports() -> None:
    """A check that cannot fail proves nothing: the walker finds imports inside functions."""
    assert "ocrnet.jobs.executor" in edges("ocrnet.predict")  # imported inside predict_run
