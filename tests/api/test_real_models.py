"""Real Rhino models through the whole stack: upload, a real worker, the stored report.

Every model of tests/fixtures/real/ (Rhino 1 to 8, from public McNeel repositories) must end
`validated` or `rejected`, never `failed`, with rhino3dm's object count, and under the name the
client sent, non-ASCII and spaces included.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import rhino3dm

from tests.utils.api import report_of, upload, wait_finished

pytestmark = pytest.mark.integration

CORPUS = sorted((Path(__file__).resolve().parents[1] / "fixtures" / "real").glob("*.3dm"))
# Client names the way people write them; each is sent with a model of the corpus.
CLIENT_NAMES = ["Façade – plan 01 (ü).3dm", "设计 模型 v2.3dm", "  leading and trailing  .3dm", "wall model.3dm"]


def test_every_real_model_reaches_a_verdict_with_rhino3dms_object_count(http, worker) -> None:
    submitted = {}
    for path in CORPUS:
        answer = upload(http, path)
        assert answer.status_code == 202, answer.text
        submitted[answer.json()["part_id"]] = path
    outcomes = {}
    for part_id, path in submitted.items():
        part = wait_finished(http, part_id, timeout=120)
        outcomes[path.name] = part["status"]
        assert part["filename"] == path.name
        if part["status"] != "failed":
            report = report_of(http, part_id)
            assert report["summary"]["objects"] == len(rhino3dm.File3dm.Read(str(path)).Objects), path.name
            assert report["metadata"]["file_name"] == path.name
            assert report["ruleset"]["name"] == "default"
    failed = sorted(name for name, status in outcomes.items() if status == "failed")
    assert not failed, f"real models that ended failed: {failed}"
    assert set(outcomes.values()) == {"validated", "rejected"}


@pytest.mark.parametrize("client_name", CLIENT_NAMES)
def test_the_client_file_name_comes_back_unchanged(http, worker, client_name: str) -> None:
    answer = upload(http, CORPUS[0], name=client_name)
    assert answer.status_code == 202, answer.text
    part = wait_finished(http, answer.json()["part_id"], timeout=60)
    assert part["filename"] == client_name
    assert part["status"] in {"validated", "rejected"}
    assert report_of(http, part["id"])["metadata"]["file_name"] == client_name
