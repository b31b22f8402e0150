"""The shape of the code (docs/architecture.md): the top-level folders are floors, and nothing imports upward.

Floors, lowest first: schemas -> core -> models -> producers -> processors -> sinks -> retrieval -> api -> argus.
A module may import its own floor and the floors below it; tests/ and benchmarks/ sit above everything. Parsed
with ``ast`` (nothing is imported), so a circle or an upward arrow hidden inside a function body counts too.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FLOORS = ["schemas", "core", "models", "producers", "processors", "sinks", "retrieval", "api", "argus"]
RANK = {name: i for i, name in enumerate(FLOORS)}
# the composition root may defer imports to keep `argus --help` and one-worker starts fast
LAZY_OK = {"argus"}


@dataclass(frozen=True)
class Edge:
    src: str  # importing module
    dst: str  # imported module (project module or package)
    line: int
    in_function: bool


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for floor in FLOORS for p in (ROOT / floor).rglob("*.py")}


def imports(mods: dict[str, Path]) -> list[Edge]:
    edges: list[Edge] = []
    for name, path in mods.items():
        tree = ast.parse(path.read_text(), str(path))

        def visit(node: ast.AST, in_function: bool, name: str = name) -> None:
            for child in ast.iter_child_nodes(node):
                inner = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
                targets: list[str] = []
                if isinstance(child, ast.Import):
                    targets = [a.name for a in child.names]
                elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                    targets = [f"{child.module}.{a.name}" if f"{child.module}.{a.name}" in mods else child.module
                               for a in child.names]
                for t in targets:
                    if t.split(".")[0] in RANK:
                        edges.append(Edge(name, t, child.lineno, inner))
                visit(child, inner)

        visit(tree, False)
    return edges


def floor(module: str) -> str:
    return module.split(".")[0]


def test_no_import_points_upward() -> None:
    upward = [f"{e.src}:{e.line} imports {e.dst} ({floor(e.src)} is below {floor(e.dst)})"
              for e in imports(project_modules()) if RANK[floor(e.dst)] > RANK[floor(e.src)]]
    assert upward == []


def test_no_import_circles() -> None:
    mods = project_modules()
    graph: dict[str, set[str]] = defaultdict(set)
    for e in imports(mods):
        if e.dst in mods and e.dst != e.src:
            graph[e.src].add(e.dst)
    # Tarjan's strongly connected components: any with more than one module is a circle
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                connect(w)
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
                circles.append(sorted(component))

    for v in list(graph):
        if v not in index:
            connect(v)
    assert circles == []


def test_project_imports_are_not_hidden_in_functions() -> None:
    """In-function imports are for optional heavy packages only, each marked ``# lazy: <reason>`` (a project
    module may be one when it imports torch); the composition root may defer imports for start-up time."""
    mods = project_modules()
    lines = {name: path.read_text().splitlines() for name, path in mods.items()}
    hidden = [f"{e.src}:{e.line} imports {e.dst} inside a function without a '# lazy: <reason>' comment"
              for e in imports(mods)
              if e.in_function and floor(e.src) not in LAZY_OK and "# lazy:" not in lines[e.src][e.line - 1]]
    assert hidden == []


def test_the_floors_are_the_top_level_folders() -> None:
    """A new top-level package must be given its floor here (and in docs/architecture.md)."""
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")}
    assert packages - {"tests", "benchmarks"} == set(FLOORS)


def test_the_argus_image_holds_every_floor() -> None:
    """compose/Dockerfile copies each top-level package (a floor left out imports fine here, fails in production)."""
    dockerfile = (ROOT / "compose" / "Dockerfile").read_text()
    copies = [line.split() for line in dockerfile.splitlines() if line.startswith("COPY ")]
    copied = {words[1] for words in copies if len(words) == 3}
    assert set(FLOORS) <= copied, sorted(set(FLOORS) - copied)
