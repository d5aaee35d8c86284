"""serving/rollout stands alone: it is called from the request path, so it must import
nothing from it (no cycle can then form), least of all the API or the transport. Its one
outside import is the shared SQLite opener, a leaf that imports nothing from serving."""

from __future__ import annotations

from tests.serving.test_import_graph import import_graph

LEAF = "serving.shared_sqlite"


def test_rollout_imports_only_itself_from_serving() -> None:
    graph = import_graph()
    rollout = {name for name in graph if name.split(".")[:2] == ["serving", "rollout"]}
    assert "serving.rollout.store" in rollout
    outside = {
        (module, target)
        for module in rollout
        for target in graph[module]
        if not target.startswith("serving.rollout")
    }
    assert {target for _, target in outside} <= {LEAF}
    assert graph[LEAF] == set()  # the leaf stays a leaf
    assert "serving.rollout.state" in graph["serving.rollout.store"]  # edges are found
