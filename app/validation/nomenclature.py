"""Naming checks for object names and layer names.

Object names must match `rules.name_pattern` in full (re.fullmatch; default
PROJECT-ZONE-TYPE-NNN, e.g. LIB-Z01-WALL-001). An empty or blank name is
NAME_MISSING (a warning) instead of NAME_PATTERN. With `rules.unique_names`,
every object whose name is used more than once gets NAME_DUPLICATE.

Layer names (each layer's own name, not its full path) must match
`rules.layer_pattern` in full; violations are LAYER_NAME_PATTERN with
object_id null and the layer's id, index and full path in details.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from .codes import LAYER_NAME_PATTERN, NAME_DUPLICATE, NAME_MISSING, NAME_PATTERN, QUOTED_CHARS, clip, finding
from .rules import ValidationRules

Pending = tuple[int | None, dict[str, Any]]


def check_object_names(
    names: list[str], kinds: list[str], rules: ValidationRules, skip: set[int] | frozenset[int] = frozenset()
) -> list[Pending]:
    """One pass over the collected names; regex work is done once per distinct name. Objects in
    `skip` (block members: named with their block, not as model objects) are not checked."""
    listed: Sequence[str | None] = [None if i in skip else name for i, name in enumerate(names)] if skip else names
    verdict: dict[str, str | None] = {}
    for name in set(listed):
        if name is None:
            continue
        if not name.strip():
            verdict[name] = NAME_MISSING
        elif rules.name_re.fullmatch(name) is None:
            verdict[name] = NAME_PATTERN
        else:
            verdict[name] = None
    out: list[Pending] = []
    for i, name in enumerate(listed):
        if name is None:  # in `skip`
            continue
        code = verdict[name]
        if code == NAME_MISSING:
            out.append((i, finding(NAME_MISSING, f"{kinds[i]} has no name", name=name, expected=rules.name_expected)))
        elif code == NAME_PATTERN:
            out.append(
                (
                    i,
                    finding(
                        NAME_PATTERN,
                        f"object name {clip(name, QUOTED_CHARS)!r} does not follow {rules.name_expected}",
                        name=name,
                        expected=rules.name_expected,
                        pattern=rules.name_pattern,
                    ),
                )
            )
    if rules.unique_names:
        out.extend(_duplicates(listed, verdict, rules))
    return out


def _duplicates(names: Sequence[str | None], verdict: dict[str, str | None], rules: ValidationRules) -> list[Pending]:
    counts = Counter(names)
    repeated = {n for n, c in counts.items() if c > 1 and n is not None and verdict[n] != NAME_MISSING}
    if not repeated:
        return []
    return [
        (
            i,
            finding(
                NAME_DUPLICATE,
                f"object name {clip(name, QUOTED_CHARS)!r} is used by {counts[name]} objects",
                name=name,
                count=counts[name],
                expected=rules.name_expected,
            ),
        )
        for i, name in enumerate(names)
        if name in repeated
    ]


def check_layer_names(layers: list[dict[str, Any]], rules: ValidationRules) -> list[Pending]:
    out: list[Pending] = []
    for layer in layers:
        name = layer["name"]
        if rules.layer_re.fullmatch(name) is None:
            out.append(
                (
                    None,
                    finding(
                        LAYER_NAME_PATTERN,
                        f"layer name {clip(name, QUOTED_CHARS)!r} ({clip(layer['full_path'], QUOTED_CHARS)}) "
                        f"does not follow {rules.layer_expected}",
                        name=name,
                        full_path=layer["full_path"],
                        layer_index=layer["index"],
                        layer_id=layer["id"],
                        expected=rules.layer_expected,
                        pattern=rules.layer_pattern,
                    ),
                )
            )
    return out
