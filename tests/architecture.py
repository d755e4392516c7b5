"""The package's import graph and module sizes, read from the source with ``ast`` (nothing is imported).

Used by ``tests/test_architecture.py`` (the rules of ``../shared/ARCHITECTURE.md``) and runnable on its own to print
the figures of issue 11: ``python tests/architecture.py``.
"""
from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("first_eval", "first_distill", "first_demo")


@dataclass(frozen=True)
class ImportEdge:
    """``source`` imports ``target`` (both dotted module names) at ``line``; ``lazy`` when inside a function."""

    source: str
    target: str
    line: int
    lazy: bool


def module_files(root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file of the packages."""
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _resolve(module: str, is_package: bool, level: int, name: str | None) -> str:
    if level == 0:
        return name or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def import_edges(root: Path = ROOT) -> list[ImportEdge]:
    """Every import of one package module by another (absolute or relative, at top level or inside functions)."""
    files = module_files(root)
    edges: list[ImportEdge] = []
    for module, path in files.items():
        is_package = path.name == "__init__.py"
        tree = ast.parse(path.read_text(), filename=str(path))
        lazy_lines = {
            node.lineno
            for function in ast.walk(tree)
            if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef))
            for node in ast.walk(function)
            if isinstance(node, (ast.Import, ast.ImportFrom))
        }
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(module, is_package, node.level, node.module)
                # `from package import module` names a module; `from module import name` names the module itself.
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in files else base for alias in node.names]
            for target in targets:
                while target and target not in files and "." in target:
                    target = target.rsplit(".", 1)[0]
                if target in files and target != module:
                    edges.append(ImportEdge(module, target, node.lineno, node.lineno in lazy_lines))
    return edges


def import_cycles(edges: list[ImportEdge]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), each sorted; a package's ``__init__`` re-exporting
    its own submodules is not a cycle of concern, so edges from a package to its own children are left out."""
    graph: dict[str, set[str]] = {}
    for edge in edges:
        if edge.target.startswith(edge.source + "."):
            continue
        graph.setdefault(edge.source, set()).add(edge.target)
        graph.setdefault(edge.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(groups)


def long_modules(limit: int = 400, root: Path = ROOT) -> dict[str, int]:
    """Modules with more than ``limit`` lines -> their line count."""
    counts = {module: len(path.read_text().splitlines()) for module, path in module_files(root).items()}
    return {module: n for module, n in sorted(counts.items()) if n > limit}


def third_party_importers(package_prefix: str, root: Path = ROOT) -> dict[str, list[str]]:
    """Modules that import ``package_prefix`` (a third-party top-level name such as ``lm_eval``) -> their lines."""
    found: dict[str, list[str]] = {}
    for module, path in module_files(root).items():
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            if any(name == package_prefix or name.startswith(package_prefix + ".") for name in names):
                found.setdefault(module, []).append(f"{path.relative_to(root)}:{node.lineno}")
    return found


if __name__ == "__main__":
    all_edges = import_edges()
    cycles = import_cycles(all_edges)
    print(f"modules over 400 lines: {long_modules() or 'none'}")
    print(f"import cycles: {len(cycles)}")
    for group in cycles:
        print("  " + " <-> ".join(group))
    print(f"modules importing lm_eval: {sorted(third_party_importers('lm_eval'))}")
