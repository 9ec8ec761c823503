"""Block definitions that contain themselves (BLOCK_CYCLE).

A block definition's members may be instances of other definitions (nested blocks). When a
definition places an instance of itself, directly or through other definitions, the block has no
finite geometry. openNURBS reads such a file; rhino3dm gives those instances an empty box.

The walk records, for each instance inside a definition, its object id and the definition it
places; the definitions' member ids then give the edges "definition -> definition it places".
Definitions on a cycle are the strongly connected components with more than one definition, or
with an edge to themselves (Tarjan's algorithm, iterative: no recursion limit on deep nesting).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .codes import BLOCK_CYCLE, clip, finding

MAX_CYCLE_LISTED = 20  # definitions named in one BLOCK_CYCLE finding
Pending = tuple[int | None, dict[str, Any]]


def read_block_cycles(model: Any, nested_refs: list[tuple[str, str]]) -> list[list[str]]:
    """Cycles among the block definitions, each a list of definition ids. Reads the definitions'
    member ids only when the model has nested instances."""
    if not nested_refs:
        return []
    places = dict(nested_refs)  # nested instance's object id -> definition it places
    edges: dict[str, set[str]] = {}
    for idef in model.InstanceDefinitions:
        targets = {places[key] for key in map(str, idef.GetObjectIds()) if key in places}
        if targets:
            edges[str(idef.Id)] = targets
    return cycles(edges)


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of the graph that contain a cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(node: str) -> tuple[str, Iterator[str]]:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        return node, iter(edges.get(node, ()))

    for root in edges:
        if root in index:
            continue
        work = [visit(root)]
        while work:
            node, targets = work[-1]
            for target in targets:
                if target not in index:
                    work.append(visit(target))
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = _pop_component(stack, on_stack, node)
                    if len(component) > 1 or node in edges.get(node, ()):
                        out.append(component)
    return out


def _pop_component(stack: list[str], on_stack: set[str], root: str) -> list[str]:
    component: list[str] = []
    while True:
        node = stack.pop()
        on_stack.discard(node)
        component.append(node)
        if node == root:
            return component[::-1]


def check_cycles(blocks: list[dict[str, Any]], found: list[list[str]]) -> list[Pending]:
    names = {block["id"]: block["name"] for block in blocks} if found else {}
    out: list[Pending] = []
    for cycle in found:
        listed = cycle[:MAX_CYCLE_LISTED]
        shown = ", ".join(repr(clip(names.get(bid, ""), 60)) for bid in listed[:5])
        more = f" and {len(cycle) - 5} more" if len(cycle) > 5 else ""
        out.append(
            (
                None,
                finding(
                    BLOCK_CYCLE,
                    f"block definition(s) {shown}{more} contain an instance of themselves"
                    f"{'' if len(cycle) == 1 else ' through each other'}",
                    size=len(cycle),
                    block_ids=listed,
                    names=[names.get(bid, "") for bid in listed],
                    truncated=len(cycle) > MAX_CYCLE_LISTED,
                ),
            )
        )
    return out
