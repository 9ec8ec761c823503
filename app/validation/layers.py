"""The layer table: every layer's full path, computed in Python, and parent cycles.

rhino3dm's `Layer.FullPath` walks the parent chain in C++ with no guard: it never returns for a
layer whose ParentLayerId is its own Id (openNURBS reads such a file), and over a deep chain its
cost grows at least with the square of the depth. So it is never called. Here each path is built
from the layer's `Name` and its parent's path (`Parent::Child`, like FullPath), memoised and
iterative: every layer is visited once whatever the depth, with no recursion limit.

* A parent id that is nil or names no layer ends the path, as in FullPath.
* Layers on a parent cycle get their own name as path; each cycle is reported once
  (LAYER_CYCLE). Layers below a cycle hang off that name.
* A path longer than MAX_PATH_CHARS is cut (it ends with "…"); the paths below it are the same
  cut string, so a 1,000-deep chain of 1,000-character names holds about 2 MB of paths, not 500 MB.
"""

from __future__ import annotations

import uuid
from typing import Any

from .codes import LAYER_CYCLE, clip, finding

NIL = str(uuid.UUID(int=0))
SEPARATOR = "::"
MAX_PATH_CHARS = 2000
MAX_CYCLE_LISTED = 20  # layers named in one LAYER_CYCLE finding
Pending = tuple[int | None, dict[str, Any]]


def read_layer_tree(model: Any) -> tuple[list[dict[str, Any]], list[list[int]]]:
    """(layers in table order: index, name, full path, parent's full path, id; the cycles, each
    a list of positions in that list). Each layer wrapper is fetched once."""
    raw = [(layer.Index, layer.Name or "", str(layer.Id), str(layer.ParentLayerId)) for layer in model.Layers]
    paths, parents, cycles = full_paths(
        [name for _, name, _, _ in raw], [lid for _, _, lid, _ in raw], [pid for _, _, _, pid in raw]
    )
    layers = [
        {
            "index": index,
            "name": name,
            "full_path": path,
            "id": lid,
            "parent": None if parent is None else paths[parent],
        }
        for (index, name, lid, _), path, parent in zip(raw, paths, parents, strict=True)
    ]
    return layers, cycles


def full_paths(
    names: list[str], ids: list[str], parent_ids: list[str]
) -> tuple[list[str], list[int | None], list[list[int]]]:
    """(full path per layer, parent position per layer or None, cycles). Linear in the number of
    layers plus the characters written (each path at most MAX_PATH_CHARS)."""
    n = len(names)
    position: dict[str, int] = {}
    for k, lid in enumerate(ids):
        position.setdefault(lid, k)
    parents = [None if pid == NIL else position.get(pid) for pid in parent_ids]
    paths: list[str] = [""] * n
    cut = [False] * n
    state = [0] * n  # 0 not seen, 1 on the current chain, 2 path known
    cycles: list[list[int]] = []
    for start in range(n):
        chain: list[int] = []
        node: int | None = start
        while node is not None and state[node] == 0:
            state[node] = 1
            chain.append(node)
            node = parents[node]
        if node is not None and state[node] == 1:  # the chain ran into itself: a cycle
            at = chain.index(node)
            cycles.append(chain[at:])
            for k in chain[at:]:
                paths[k], cut[k] = _bounded(names[k])
                state[k] = 2
            del chain[at:]
        for k in reversed(chain):  # from the top of the chain down
            parent = parents[k]
            if parent is None:
                paths[k], cut[k] = _bounded(names[k])
            elif cut[parent]:
                paths[k], cut[k] = paths[parent], True
            else:
                paths[k], cut[k] = _bounded(paths[parent] + SEPARATOR + names[k][: MAX_PATH_CHARS + 1])
            state[k] = 2
    return paths, parents, cycles


def _bounded(path: str) -> tuple[str, bool]:
    """(the path, cut to MAX_PATH_CHARS; whether it was cut)."""
    return clip(path, MAX_PATH_CHARS), len(path) > MAX_PATH_CHARS


def check_cycles(layers: list[dict[str, Any]], cycles: list[list[int]]) -> list[Pending]:
    out: list[Pending] = []
    for cycle in cycles:
        members = [layers[k] for k in cycle[:MAX_CYCLE_LISTED]]
        names = ", ".join(repr(clip(layer["name"], 60)) for layer in members[:5])
        more = f" and {len(cycle) - 5} more" if len(cycle) > 5 else ""
        out.append(
            (
                None,
                finding(
                    LAYER_CYCLE,
                    f"layer parents form a cycle of {len(cycle)} layer(s): {names}{more}",
                    size=len(cycle),
                    layer_ids=[layer["id"] for layer in members],
                    names=[layer["name"] for layer in members],
                    truncated=len(cycle) > MAX_CYCLE_LISTED,
                ),
            )
        )
    return out
