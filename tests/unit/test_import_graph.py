"""The import rules of DESIGN.md, checked on the source of every module.

Every ``.py`` file of ``sequencer``, ``drivers``, ``reduce``, ``simulators``,
``benchmarks`` and ``tests`` is parsed with :mod:`ast` (nothing is imported);
each ``import`` and ``from ... import`` anywhere in it, at module level or
inside a function, is an edge to the project module it names. Then:

* ``sequencer`` imports ``sequencer``, ``drivers`` and ``reduce`` only;
* ``drivers`` imports ``drivers`` only (``drivers.protocol`` included), and
  ``drivers.protocol``, the sans-I/O codecs, only itself and ``drivers.errors``;
* ``simulators`` imports ``simulators``, ``drivers.protocol`` and
  ``drivers.errors`` (the error root STYLE.md names for drivers, simulators
  and sequencer);
* ``reduce`` imports ``reduce`` only;
* nothing outside ``tests`` imports ``tests``;
* no two project modules import each other, directly or through others (an
  import under ``if TYPE_CHECKING:`` never runs and is left out of this one).

The exceptions are in :data:`ALLOWED`, each with its reason, so that they
stay visible until they are fixed.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOP = ("sequencer", "drivers", "reduce", "simulators", "benchmarks", "tests")

#: What each product package may import, by module-name prefix (the longest
#: key an importer falls under applies).
MAY_IMPORT: dict[str, tuple[str, ...]] = {
    "sequencer": ("sequencer", "drivers", "reduce"),
    "drivers": ("drivers",),
    "drivers.protocol": ("drivers.protocol", "drivers.errors"),
    "simulators": ("simulators", "drivers.protocol", "drivers.errors"),
    "reduce": ("reduce",),
}

#: Known breaches of the rules above, (importer, imported): why each is here.
#: An entry that no longer matches an import fails the test: delete it then.
ALLOWED: dict[tuple[str, str], str] = {
    # The hardened reader of user files (regular files only, size-bounded)
    # and the YAML loader that refuses duplicate keys live in drivers/; the
    # simulators read scenario files and the ACF with them. The fix is in
    # drivers/ (not this change's to edit): move both to a module the rule
    # names (drivers/protocol, or a shared one DESIGN.md lists), not a copy.
    ("simulators.archon_serve", "drivers.files"): "scenario/ACF file reader",
    ("simulators.faults", "drivers.files"): "scenario file reader",
    ("simulators.faults", "drivers.safeyaml"): "scenario YAML loader",
}

#: Known import cycles, each as its sorted list of modules: why it is here.
ALLOWED_CYCLES: dict[tuple[str, ...], str] = {
    # `python -m simulators.archon` runs the serving code from the model's
    # `if __name__ == "__main__":` block, and archon_serve imports the model:
    # run as a script the model is loaded twice (as __main__ and by name).
    # Fix (simulators/archon.py, not this change's): point the entry point at
    # simulators.archon_serve, or give archon_serve a __main__ of its own.
    ("simulators.archon", "simulators.archon_serve"): "python -m entry block",
    # tests.killpoints writes its one test frame with the raw-frame test's
    # helpers (make_meta, pixels), and that test imports tests.killpoints for
    # its kill points. Fix (neither file is this change's): move make_meta
    # and pixels to a helper module both import.
    ("tests.killpoints", "tests.unit.sequencer.test_rawfits"): "shared helpers",
}


@dataclass(frozen=True)
class Edge:
    """One import statement naming a project module."""

    importer: str
    imported: str
    line: int
    in_function: bool
    type_checking: bool

    def where(self) -> str:
        scope = "in a function" if self.in_function else "module level"
        return f"{self.importer}:{self.line} ({scope}) imports {self.imported}"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    """Every module of the project, by dotted name."""
    found: dict[str, Path] = {}
    for top in TOP:
        for path in sorted((ROOT / top).rglob("*.py")):
            if "__pycache__" not in path.parts:
                found[module_name(path)] = path
    return found


MODULES = project_modules()


def resolve(name: str) -> str | None:
    """The project module ``name`` refers to (its longest known prefix)."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in MODULES:
            return candidate
        parts.pop()
    return None


def _targets(node: ast.Import | ast.ImportFrom, importer: str) -> Iterator[str]:
    """Dotted names an import statement may refer to, most specific first."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield alias.name
        return
    if node.level:
        is_package = MODULES[importer].name == "__init__.py"
        package = importer.split(".")
        package = package if is_package else package[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join([*package, *(node.module.split(".") if node.module else [])])
    else:
        base = node.module or ""
        # benchmarks are scripts run from their folder: a bare import of a
        # sibling script is that script
        if importer.startswith("benchmarks.") and f"benchmarks.{base}" in MODULES:
            base = f"benchmarks.{base}"
    for alias in node.names:
        yield f"{base}.{alias.name}"


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def edges_of(importer: str) -> list[Edge]:
    """The project imports of one module."""
    tree = ast.parse(MODULES[importer].read_text(encoding="utf-8"))
    found: list[Edge] = []

    def visit(node: ast.AST, in_function: bool, type_checking: bool) -> None:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for target in _targets(node, importer):
                imported = resolve(target)
                if imported is not None and imported != importer:
                    found.append(
                        Edge(
                            importer, imported, node.lineno, in_function, type_checking
                        )
                    )
            return
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            in_function = True
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for stmt in node.body:
                visit(stmt, in_function, True)
            for stmt in node.orelse:
                visit(stmt, in_function, type_checking)
            return
        for child in ast.iter_child_nodes(node):
            visit(child, in_function, type_checking)

    visit(tree, False, False)
    return found


#: One edge per import statement and module named (``from a import b, c``
#: naming two names of one module is one edge).
EDGES = list(dict.fromkeys(edge for name in MODULES for edge in edges_of(name)))


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def rule_breaches() -> list[Edge]:
    """Imports that break the layering rules (allowed ones included)."""
    out = []
    for edge in EDGES:
        layer = max(
            (key for key in MAY_IMPORT if _within(edge.importer, key)),
            key=len,
            default=None,
        )
        outside_tests = not _within(edge.importer, "tests")
        if (_within(edge.imported, "tests") and outside_tests) or (
            layer is not None
            and not any(_within(edge.imported, ok) for ok in MAY_IMPORT[layer])
        ):
            out.append(edge)
    return out


def cycles() -> list[tuple[str, ...]]:
    """Every strongly connected set of two or more modules (Tarjan), sorted."""
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for edge in EDGES:
        if not edge.type_checking:
            graph[edge.importer].add(edge.imported)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[tuple[str, ...]] = []

    def connect(node: str) -> None:
        # recursive: the module graph is shallow (depth well under 100)
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            members = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                members.append(member)
                if member == node:
                    break
            if len(members) > 1:
                found.append(tuple(sorted(members)))

    for name in sorted(graph):
        if name not in index:
            connect(name)
    return sorted(found)


def test_every_package_is_parsed() -> None:
    tops = {name.split(".")[0] for name in MODULES}
    assert tops == set(TOP)
    assert len(MODULES) > 150


def test_function_level_imports_are_seen() -> None:
    # sequencer.engineering.cli imports the campaign inside its command
    inner = [e for e in EDGES if e.in_function]
    assert inner, "no import inside a function found: the walk is broken"


def test_layering_rules() -> None:
    breaches = [e for e in rule_breaches() if (e.importer, e.imported) not in ALLOWED]
    assert not breaches, "imports against DESIGN.md's rules:\n" + "\n".join(
        e.where() for e in breaches
    )


def test_allowed_breaches_still_exist() -> None:
    present = {(e.importer, e.imported) for e in rule_breaches()}
    stale = sorted(set(ALLOWED) - present)
    assert not stale, f"fixed, delete from ALLOWED: {stale}"


def test_no_import_cycles() -> None:
    found = [c for c in cycles() if c not in ALLOWED_CYCLES]
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_allowed_cycles_still_exist() -> None:
    stale = sorted(set(ALLOWED_CYCLES) - set(cycles()))
    assert not stale, f"fixed, delete from ALLOWED_CYCLES: {stale}"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import sequencer.journal", "sequencer.journal"),
        ("from sequencer.engineering import cli", "sequencer.engineering.cli"),
        ("from sequencer import __version__", "sequencer"),
        ("from . import harness", "tests.faults.harness"),
        ("from .harness import Row", "tests.faults.harness"),
    ],
)
def test_resolution(source: str, expected: str) -> None:
    node = ast.parse(source).body[0]
    assert isinstance(node, (ast.Import, ast.ImportFrom))
    resolved = {resolve(t) for t in _targets(node, "tests.faults.test_matrix")}
    assert resolved == {expected}


def test_the_checks_catch_a_planted_breach_and_cycle(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    planted = [
        Edge("sequencer.journal", "simulators.faults", 1, True, False),
        Edge("reduce.io", "sequencer.journal", 1, False, False),
        Edge("drivers.protocol.cover", "drivers.transport", 1, False, False),
        Edge("benchmarks.soak", "tests.killpoints", 1, False, False),
        Edge("sequencer.journal", "sequencer.rawfits", 1, True, False),
        Edge("sequencer.rawfits", "sequencer.journal", 1, False, False),
        Edge("sequencer.runfolder", "sequencer.run", 1, False, True),
        Edge("sequencer.run", "sequencer.runfolder", 1, False, False),
    ]
    monkeypatch.setattr(f"{__name__}.EDGES", planted)
    assert rule_breaches() == planted[:4]
    # an import under TYPE_CHECKING never runs: no cycle through it
    assert cycles() == [("sequencer.journal", "sequencer.rawfits")]
