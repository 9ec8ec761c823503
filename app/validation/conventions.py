"""A team's conventions from its ruleset: layers, object types, user text, units, blocks, size.

Every rule here is off until the ruleset sets it (docs/rulesets.md). Objects inside
block definitions are not model objects: the object-type and user-text rules apply to the
objects placed in the model, block members are checked through their definition's name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .codes import (
    BLOCK_NAME_PATTERN,
    LAYER_MISSING,
    LAYER_NOT_ALLOWED,
    OBJECT_COUNT_EXCEEDED,
    OBJECT_TYPE_NOT_ALLOWED,
    QUOTED_CHARS,
    UNITS_MISMATCH,
    USER_TEXT_MISSING,
    USER_TEXT_PATTERN,
    clip,
    finding,
)
from .rules import ValidationRules

if TYPE_CHECKING:
    from .walk import ObjectData

Pending = tuple[int | None, dict[str, Any]]


def check_layers(layers: list[dict[str, Any]], rules: ValidationRules) -> list[Pending]:
    present = {layer["full_path"] for layer in layers}
    out: list[Pending] = [
        (None, finding(LAYER_MISSING, f"required layer {path!r} is missing", full_path=path))
        for path in rules.required_layers
        if path not in present
    ]
    if rules.allowed_layer_names:
        allowed = set(rules.allowed_layer_names)
        out.extend(
            (
                None,
                finding(
                    LAYER_NOT_ALLOWED,
                    f"layer name {clip(layer['name'], QUOTED_CHARS)!r} "
                    f"({clip(layer['full_path'], QUOTED_CHARS)}) is not an allowed layer name",
                    name=layer["name"],
                    full_path=layer["full_path"],
                    layer_index=layer["index"],
                    layer_id=layer["id"],
                ),
            )
            for layer in layers
            if layer["name"] not in allowed
        )
    return out


def check_objects(data: ObjectData, rules: ValidationRules) -> list[Pending]:
    out: list[Pending] = []
    if rules.allowed_object_types:
        allowed = ", ".join(rules.allowed_object_types)
        out.extend(
            (
                i,
                finding(
                    OBJECT_TYPE_NOT_ALLOWED,
                    f"{data.kinds[i]} is not an allowed object type ({allowed})",
                    kind=data.kinds[i],
                    allowed=list(rules.allowed_object_types),
                ),
            )
            for i in data.not_allowed
        )
    for i, strings in data.user_text.items():
        for key in rules.required_user_text:
            value = strings.get(key)
            if value is None:
                out.append(
                    (
                        i,
                        finding(
                            USER_TEXT_MISSING, f"{data.kinds[i]} has no user text {key!r}", key=key, kind=data.kinds[i]
                        ),
                    )
                )
            elif rules.user_text_re(key).fullmatch(value) is None:
                pattern = rules.required_user_text[key]
                out.append(
                    (
                        i,
                        finding(
                            USER_TEXT_PATTERN,
                            f"user text {key}={value[:200]!r} does not match {pattern!r}",
                            key=key,
                            value=value[:200],
                            pattern=pattern,
                            kind=data.kinds[i],
                        ),
                    )
                )
    if rules.max_object_count is not None and data.count > rules.max_object_count:
        out.append(
            (
                None,
                finding(
                    OBJECT_COUNT_EXCEEDED,
                    f"the model holds {data.count} objects, more than the {rules.max_object_count} allowed",
                    objects=data.count,
                    limit=rules.max_object_count,
                ),
            )
        )
    return out


def check_units(unit_system: str, rules: ValidationRules) -> list[Pending]:
    if rules.required_units is None or unit_system == rules.required_units:
        return []
    return [
        (
            None,
            finding(
                UNITS_MISMATCH,
                f"model units are {unit_system}, {rules.required_units} are required",
                unit_system=unit_system,
                required=rules.required_units,
            ),
        )
    ]


def check_blocks(blocks: list[dict[str, Any]], rules: ValidationRules) -> list[Pending]:
    pattern = rules.block_name_re
    if pattern is None:
        return []
    return [
        (
            None,
            finding(
                BLOCK_NAME_PATTERN,
                f"block name {clip(block['name'], QUOTED_CHARS)!r} does not match {rules.block_name_pattern!r}",
                name=block["name"],
                block_id=block["id"],
                pattern=rules.block_name_pattern,
            ),
        )
        for block in blocks
        if pattern.fullmatch(block["name"]) is None
    ]
