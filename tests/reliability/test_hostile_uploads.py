"""Scenario 10: hostile uploads to POST /api/v1/parts on an API with MAX_FILE_SIZE_MB=1.

Every answer is a 4xx JSON (never a 5xx) or a 202 whose part ends `rejected`; nothing is written
outside the storage dir (no temp file left in storage/.incoming either); no part is left unfinished;
an over-limit body streamed without a Content-Length does not grow the API's memory by its size.
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from tests.conftest import TMP
from tests.reliability.helpers import Stack, redis_db_url, report, vm_hwm_kb, wait_until

pytestmark = pytest.mark.integration

FINISHED = {"validated", "rejected", "failed"}
MB = 1024 * 1024


@pytest.fixture(scope="module")
def stack(broker):
    with Stack("hostile-uploads", redis_db_url(broker, 14), MAX_FILE_SIZE_MB="1") as stack:
        stack.api, stack.base = stack.start_api("api")  # type: ignore[attr-defined]
        stack.start_worker("hu")
        yield stack


def tree(root: Path, skip: list[Path]) -> set[str]:
    files = set()
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if not any(here / d == s for s in skip)]
        files.update(str(here / f) for f in filenames)
    return files


def post(base: str, **kwargs) -> httpx.Response | str:  # type: ignore[no-untyped-def]
    try:
        return httpx.post(f"{base}/api/v1/parts", timeout=60, **kwargs)
    except httpx.HTTPError as exc:  # e.g. the server answered and closed while we were still sending
        return f"{type(exc).__name__}"


def streamed(total: int, chunk: int = 64 * 1024):  # type: ignore[no-untyped-def]
    boundary = "rel-boundary"
    yield (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.3dm"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    sent = 0
    while sent < total:
        yield b"\0" * min(chunk, total - sent)
        sent += chunk
    yield f"\r\n--{boundary}--\r\n".encode()


def test_hostile_uploads_answer_4xx_or_rejected_and_write_nowhere_else(stack, models):
    base = stack.base  # type: ignore[attr-defined]
    api = stack.api  # type: ignore[attr-defined]
    skip = [TMP / "logs", TMP / "var", stack.storage_dir, stack.var_dir, TMP / "valkey"]
    before = tree(TMP, skip)
    tmp_before = set(os.listdir("/tmp"))
    valid = models["valid_part"].read_bytes()

    def file(name: str, data: bytes, ctype: str = "application/octet-stream") -> dict:
        return {"files": {"file": (name, data, ctype)}}

    cases: dict[str, dict] = {
        "corrupt bytes": file("corrupt.3dm", models["corrupt_bytes"].read_bytes()),
        "truncated": file("truncated.3dm", models["truncated"].read_bytes()),
        "empty": file("empty.3dm", b""),
        "not a 3dm, .3dm name": file("notreally.3dm", models["not_3dm"].read_bytes()),
        "not a 3dm name": file("model.step", valid),
        "over limit, Content-Length declared (5 MB)": file("big.3dm", b"\0" * (5 * MB)),
        "path traversal ../": file("../../../../../tmp/rel-evil.3dm", valid),
        "path traversal ..\\": file("..\\..\\..\\rel-evil2.3dm", valid),
        "absolute path": file("/etc/cron.d/rel-evil3.3dm", valid),
        "NUL and control chars": file("a\x00b\x1f\x7f.3dm", valid),
        "5,000-char filename": file("A" * 4996 + ".3dm", valid),
        "text/plain file part": file("plain.3dm", b"hello, I am text", "text/plain"),
        "JSON body": {"json": {"file": "x.3dm"}},
        "raw octet-stream body": {"content": valid, "headers": {"content-type": "application/octet-stream"}},
        "multipart without boundary": {"content": b"--x\r\n", "headers": {"content-type": "multipart/form-data"}},
        "malformed multipart": {
            "content": b"--b\r\nnot a header line\r\n\r\nxx",
            "headers": {"content-type": "multipart/form-data; boundary=b"},
        },
        "no file field": {"data": {"owner": "x"}, "files": {"other": ("o.txt", b"o")}},
        "2 MB text field": {"data": {"owner": "o" * (2 * MB)}, "files": {"file": ("x.3dm", valid)}},
        "100 KB text field (under the body limit)": {
            "data": {"owner": "o" * (100 * 1024)},
            "files": {"file": ("x.3dm", valid)},
        },
        "1,001 file parts": {"files": [("file", (f"f{n}.3dm", b"x")) for n in range(1001)]},
    }
    answers: dict[str, object] = {}
    parts: dict[str, str] = {}
    for name, kwargs in cases.items():
        answer = post(base, **kwargs)
        if isinstance(answer, str):
            answers[name] = answer
            continue
        try:
            body = answer.json()
        except ValueError:
            body = {"not_json": answer.text[:200]}
        answers[name] = (answer.status_code, str(body.get("detail", body.get("status")))[:80])
        if answer.status_code == 202:
            parts[name] = body["part_id"]

    # Over the limit, streamed with no Content-Length: refused while it arrives, memory stays flat.
    list(
        httpx.post(
            f"{base}/api/v1/parts",
            content=streamed(int(1.5 * MB)),
            timeout=60,
            headers={"content-type": "multipart/form-data; boundary=rel-boundary"},
        ).iter_bytes()
    )
    hwm_before = vm_hwm_kb(api.pid)
    big = post(base, content=streamed(5 * MB), headers={"content-type": "multipart/form-data; boundary=rel-boundary"})
    hwm_after = vm_hwm_kb(api.pid)
    answers["over limit, streamed chunked (5 MB)"] = (
        big if isinstance(big, str) else (big.status_code, big.json()["detail"][:80])
    )

    def statuses() -> dict[str, str]:
        return {n: httpx.get(f"{base}/api/v1/parts/{p}", timeout=10).json()["status"] for n, p in parts.items()}

    final = wait_until(
        lambda: (s := statuses()) and all(v in FINISHED for v in s.values()) and s,
        timeout=90,
        message=f"parts left unfinished: {statuses()}",
    )
    listed = httpx.get(f"{base}/api/v1/parts", params={"limit": 500}).json()
    unfinished = [p["id"] for p in listed["items"] if p["status"] not in FINISHED]

    after = tree(TMP, skip)
    new_outside = sorted(after - before)
    new_in_tmp = sorted(set(os.listdir("/tmp")) - tmp_before)
    leftovers = [str(p) for p in (stack.storage_dir / ".incoming").glob("*")]
    stored = [p for p in stack.storage_dir.rglob("*") if p.is_file() and ".incoming" not in p.parts]
    escaped = [str(p) for p in stored if stack.storage_dir.resolve() not in p.resolve().parents]
    bad_names = [p.name for p in stored if len(p.name) > 120 or ".." in p.name or "\x00" in p.name]
    codes = [a[0] for a in answers.values() if isinstance(a, tuple)]
    report(
        "hostile uploads",
        answers=answers,
        part_statuses=final,
        unfinished_parts=unfinished,
        five_xx=sum(1 for c in codes if c >= 500),
        new_files_outside_storage=new_outside,
        new_entries_in_tmp=[e for e in new_in_tmp if "rel-evil" in e],
        incoming_leftovers=leftovers,
        escaped=escaped,
        api_vmhwm_growth_kb=hwm_after - hwm_before,
        api_alive=api.alive(),
    )
    assert not [a for a in codes if a >= 500], answers
    for name, answer in answers.items():
        if isinstance(answer, tuple):
            assert 400 <= answer[0] < 500 or answer[0] == 202, (name, answer)
    for name, status in final.items():
        expected = (
            "validated"
            if name
            in {
                "path traversal ../",
                "path traversal ..\\",
                "absolute path",
                "NUL and control chars",
                "5,000-char filename",
            }
            else "rejected"
        )
        assert status == expected, (name, status)
    assert (
        answers["over limit, Content-Length declared (5 MB)"] in ("WriteError", "RemoteProtocolError")
        or answers["over limit, Content-Length declared (5 MB)"][0] == 413
    )
    assert isinstance(big, str) or big.status_code == 413
    assert hwm_after - hwm_before < 5 * 1024, f"API peak memory grew by {hwm_after - hwm_before} KB"
    assert answers["1,001 file parts"][0] == 413 and answers["2 MB text field"][0] == 413
    assert answers["100 KB text field (under the body limit)"][0] == 413
    assert not unfinished and not new_outside and not leftovers and not escaped and not bad_names
    assert not [e for e in new_in_tmp if "rel-evil" in e]
    assert api.alive()
