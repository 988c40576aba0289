"""The apps form layers: no import cycle between them, counting imports inside functions too.

From the bottom: the project's infrastructure modules (settings helpers, logging, request
context, the admin base, parsers, errors, schema, the Celery app), cachemgmt (the cache and the operations
pages), zones, accounts, and on top the project's entry points (settings, urls, wsgi,
asgi), which nothing imports. A lower layer tells a higher one something
through a signal or a hook it owns (``zones.signals``, ``cachemgmt.hooks``).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("project", "cachemgmt", "zones", "accounts")
ENTRY_POINTS = {"project.settings", "project.urls", "project.wsgi", "project.asgi"}
ORDER = ["project (infrastructure)", "cachemgmt", "zones", "accounts", "project (entry points)"]


def layer_of(module: str) -> str | None:
    if module in ENTRY_POINTS:
        return "project (entry points)"
    top = module.split(".")[0]
    if top == "project":
        return "project (infrastructure)"
    return top if top in PACKAGES else None


def imports_of(path: Path) -> set[str]:
    """Every module an import statement in ``path`` names, at any depth of the file."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            # ``from cachemgmt import cache`` names a module too.
            found.update(
                f"{node.module}.{alias.name}" for alias in node.names if is_module(f"{node.module}.{alias.name}")
            )
    return found


def is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def layer_edges() -> dict[tuple[str, str], list[str]]:
    edges: dict[tuple[str, str], list[str]] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            source = layer_of(module)
            for imported in imports_of(path):
                target = layer_of(imported)
                if source is not None and target is not None and target != source:
                    edges.setdefault((source, target), []).append(f"{module} imports {imported}")
    return edges


def test_every_import_between_layers_points_down():
    upward = {
        edge: where
        for edge, where in layer_edges().items()
        if ORDER.index(edge[0]) < ORDER.index(edge[1])  # a lower layer importing a higher one
    }
    assert not upward, "\n".join(line for lines in upward.values() for line in lines)


def test_the_layer_graph_has_no_cycle():
    edges = layer_edges()
    graph: dict[str, set[str]] = {}
    for source, target in edges:
        graph.setdefault(source, set()).add(target)
    visiting: set[str] = set()
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> None:
        assert node not in visiting, f"import cycle: {' -> '.join([*path, node])}"
        if node in done:
            return
        visiting.add(node)
        for nxt in sorted(graph.get(node, ())):
            visit(nxt, [*path, node])
        visiting.discard(node)
        done.add(node)

    for node in sorted(graph):
        visit(node, [])
    assert graph, "no import between layers was found, so nothing was checked"
