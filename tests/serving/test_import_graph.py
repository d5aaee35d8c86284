"""No import cycles under serving/, type-only imports included: each module has one owner and
dependencies point one way (api -> lifecycle -> batching, observability -> batching)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "serving"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_the_checker_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_serving_has_no_import_cycles() -> None:
    graph = import_graph()
    assert "serving.batching.request" in graph["serving.batching.queue"]  # edges are found
    assert cycles(graph) == []


def room(module: str) -> str:
    """``serving.pipeline.stages`` -> ``pipeline``; ``serving.app`` -> ``app``."""
    return module.split(".")[1] if "." in module else module


#: Where requests arrive and leave (HTTP server, Litestar routes, wiring) ...
OUTER = {"transport", "api", "app", "__main__", "testing", "grpc"}
#: ... and what they are served with: never importing the outer rooms.
INNER = {
    "pipeline", "batching", "lifecycle", "versions", "model", "settings", "feedback", "rollout",
    "rollout_service",
}  # fmt: skip


def test_arrows_point_inwards() -> None:
    """The transport and the Litestar routes use the pipeline and the domain, never the other
    way round; ``api/`` never imports ``api/v2/`` (v2 is one more set of routes beside v1)."""
    graph = import_graph()
    edges = [(a, b) for a, targets in graph.items() for b in targets]
    assert [(a, b) for a, b in edges if room(a) in INNER and room(b) in OUTER] == []
    assert [
        (a, b)
        for a, b in edges
        if a.startswith("serving.api.")
        and not a.startswith("serving.api.v2")
        and b.startswith("serving.api.v2")
    ] == []
