"""GET /api/v1/parts filters (status, owner, ruleset, part of the file name), as the console uses them."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

MODEL = Path(__file__).resolve().parents[1] / "fixtures" / "real" / "v2_5_curves.3dm"


def test_parts_are_filtered_by_owner_ruleset_and_a_part_of_the_file_name(http):
    owner, tag = f"filters-{secrets.token_hex(3)}", secrets.token_hex(3)
    names = [f"Wall_{tag}%_A.3dm", f"wall_{tag}x_B.3dm", f"Slab_{tag}.3dm"]
    ids = {}
    for name in names:
        answer = http.post("/api/v1/parts", files={"file": (name, MODEL.read_bytes())}, data={"owner": owner})
        assert answer.status_code == 202, answer.text
        ids[name] = answer.json()["part_id"]

    def listed(**params: str) -> list[str]:
        answer = http.get("/api/v1/parts", params={"limit": 50, **params})
        assert answer.status_code == 200, answer.text
        return sorted(p["filename"] for p in answer.json()["items"])

    assert listed(owner=owner) == sorted(names)
    assert listed(owner=owner, filename=f"WALL_{tag}") == sorted(names[:2])  # any case
    assert listed(owner=owner, filename=f"{tag}%") == [names[0]]  # % and _ are plain characters
    # "x_B": the tag is hex, so no other name holds it in any case ("_B" matched "_b…" tags)
    assert listed(owner=owner, filename="x_B") == [names[1]]
    assert listed(owner=owner, ruleset="default") == sorted(names)
    assert listed(owner=owner, ruleset="no-such-ruleset") == []
    assert listed(owner=f"{owner}-nobody") == []
    total = http.get("/api/v1/parts", params={"owner": owner, "filename": "slab", "limit": 1}).json()["total"]
    assert total == 1
    assert http.get("/api/v1/parts", params={"filename": "x" * 256}).status_code == 422
