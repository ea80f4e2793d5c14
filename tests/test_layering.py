"""Guards on the shape of the code: the public API, who may import what, and no import circles in core/."""

from __future__ import annotations

import ast
from pathlib import Path

import core

ROOT = Path(__file__).resolve().parent.parent
PUBLIC_FACE = ("core", "core.types", "core.errors", "core.interfaces", "core.hookspecs", "core.config", "core.http",
               "core.imaging", "core.logs", "core.testing", "core.chat")
INTERNAL = ("core.engine", "core.store", "core.hooks")


def imports_of(path: Path, *, type_checking: bool = True) -> set[str]:
    """Every ``core…`` module a file imports (``from core.x import y`` counts as ``core.x``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    hidden = set() if type_checking else {id(child) for node in ast.walk(tree) if _is_type_checking_block(node)
                                          for child in ast.walk(node)}
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in hidden:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return {name for name in found if name == "core" or name.startswith("core.")}


def _is_type_checking_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def module_name(path: Path) -> str:
    """``core/engine/jobs.py`` → ``core.engine.jobs``; a package's ``__init__`` is the package."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def sources(*folders: str) -> list[Path]:
    """The Python files under ``folders``."""
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def test_the_public_api_is_exactly_what_core_all_names():
    exported = {name for name in dir(core) if not name.startswith("_") and not _is_module(getattr(core, name))}
    assert set(core.__all__) - {"__version__"} == exported
    assert all(getattr(core, name) is not None for name in core.__all__)


def _is_module(value: object) -> bool:
    return type(value).__name__ == "module"


def test_platforms_and_plugins_import_only_the_public_face():
    offenders = {}
    for path in sources("platforms", "plugins"):
        bad = {name for name in imports_of(path) if name.startswith(INTERNAL)}
        if bad:
            offenders[str(path.relative_to(ROOT))] = sorted(bad)
    assert offenders == {}


def test_only_the_composer_knows_the_composer():
    offenders = []
    for path in sources("core"):
        if module_name(path) in ("core.engine", "core.engine.engine", "core", "core.cli", "core.testing"):
            continue
        names = imports_of(path, type_checking=False)
        if "core.engine.engine" in names or "core.engine" in names:
            offenders.append(module_name(path))
    assert offenders == []


def test_core_has_no_import_circle():
    graph = {module_name(p): {n for n in imports_of(p, type_checking=False)} for p in sources("core")}
    graph = {m: {n for n in deps if n in graph and n != m and not m.startswith(n + ".")} for m, deps in graph.items()}
    assert _cycle(graph) is None


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle in ``graph`` as a list of modules, or ``None``."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None
