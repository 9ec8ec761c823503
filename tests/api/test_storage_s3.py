"""STORAGE_URL=s3://…: a real API and a real worker on a real S3 server (SeaweedFS), no storage dir.

The stack runs on Redis database 3 (flushed first; test_health uses it in turn) with its own
VAR_DIR and a STORAGE_DIR that never exists: every file the worker reads comes from S3.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time

import httpx
import pytest

from app.storage import tempfiles
from tests.conftest import TMP, stack_env, start_api, start_worker
from tests.utils.api import upload, wait_batch_done, wait_finished
from tests.utils.processes import ROOT, free_port

pytestmark = pytest.mark.integration

REDIS_DB = 3
REAL_MODEL = ROOT / "tests" / "fixtures" / "real" / "Circles.3dm"
MAX_MB = 10  # over one S3 part (8 MiB): a refused upload has sent a part before its 413


@pytest.fixture(scope="module")
def stack(broker, s3_store):
    tag = secrets.token_hex(3)
    prefix = f"stack-{tag}/"
    var, storage = TMP / f"s3-var-{tag}", TMP / f"s3-no-storage-{tag}"
    tmp_dir = var / "tmp" / "storage"
    tmp_dir.mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    killed_copy = tmp_dir / f"{tempfiles._host()}-{dead.pid}-0123456789abcdef.3dm"  # a SIGKILLed task's
    killed_copy.write_bytes(b"left behind")
    live_copy = tmp_dir / f"{tempfiles._host()}-{os.getpid()}-fedcba9876543210.3dm"  # a live process's
    live_copy.write_bytes(b"in use")
    env = stack_env(
        REDIS_URL=broker.db_url(REDIS_DB),
        VAR_DIR=str(var),
        STORAGE_DIR=str(storage),
        MAX_FILE_SIZE_MB=str(MAX_MB),
        **s3_store.server.env(s3_store.bucket, prefix),
    )
    worker = start_worker(f"s3w{tag}", env=env)
    try:
        api, base = start_api(f"s3api{tag}", env=env)
    except BaseException:
        worker.stop()
        raise
    try:
        with httpx.Client(base_url=base, timeout=30) as http:
            yield {
                "http": http,
                "api": api,
                "worker": worker,
                "env": env,
                "prefix": prefix,
                "storage": storage,
                "tmp_dir": tmp_dir,
                "killed_copy": killed_copy,
                "live_copy": live_copy,
                "s3": s3_store,
            }
    finally:
        api.stop()
        worker.stop()


def objects(stack) -> list[str]:
    return stack["s3"].server.keys(stack["s3"].bucket, stack["prefix"])


def open_uploads(stack) -> list[str]:
    return stack["s3"].server.pending_uploads(stack["s3"].bucket, stack["prefix"])


def test_the_worker_swept_dead_processes_copies_at_start_and_kept_a_live_ones(stack):
    assert not stack["killed_copy"].exists()
    assert stack["live_copy"].exists()
    ready = [line for line in stack["worker"].json_lines() if line.get("event") == "storage ready"]
    assert ready and ready[0]["temp_files_swept"] == 1
    assert ready[0]["store"].startswith(f"s3://{stack['s3'].bucket}/{stack['prefix']}")


def test_a_real_model_goes_through_s3_and_a_worker_validates_it_from_there(stack):
    http = stack["http"]
    answer = upload(http, REAL_MODEL)
    assert answer.status_code == 202, answer.text
    part_id = answer.json()["part_id"]
    assert f"{stack['prefix']}parts/{part_id}/Circles.3dm" in objects(stack)
    part = wait_finished(http, part_id, timeout=90)
    assert part["status"] in ("validated", "rejected"), part
    assert part["summary"] is not None and part["size_bytes"] == REAL_MODEL.stat().st_size
    assert not stack["storage"].exists()  # nothing was ever written to, or read from, a storage dir
    assert sorted(p.name for p in stack["tmp_dir"].iterdir()) == [stack["live_copy"].name]  # copy removed


def test_a_batch_item_runs_the_pipeline_reading_from_s3(stack):
    http = stack["http"]
    with REAL_MODEL.open("rb") as handle:
        answer = http.post("/api/v1/batches", files=[("files", ("circles.3dm", handle, "application/octet-stream"))])
    assert answer.status_code == 202, answer.text
    batch = wait_batch_done(http, answer.json()["batch_id"], timeout=120)
    assert batch["completed"] == 1 and batch["failed"] == 0, batch
    assert not stack["storage"].exists()


def test_an_upload_over_the_limit_is_413_and_leaves_no_object_and_no_open_multipart_upload(stack):
    before, seen_open = objects(stack), []
    boundary = "s3-limit-test"

    def body():  # streamed: once a part's worth is sent, wait to see the multipart upload open
        yield f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.3dm"\r\n\r\n'.encode()
        for n in range(MAX_MB + 2):
            yield secrets.token_bytes(1024 * 1024)
            if n == 9 and not seen_open:
                deadline = time.monotonic() + 10
                while not seen_open and time.monotonic() < deadline:
                    seen_open.extend(open_uploads(stack))
                    time.sleep(0.05)
        yield f"\r\n--{boundary}--\r\n".encode()

    answer = stack["http"].post(
        "/api/v1/parts", content=body(), headers={"content-type": f"multipart/form-data; boundary={boundary}"}
    )
    assert answer.status_code == 413, answer.text
    assert len(seen_open) == 1  # the first 8 MiB part had gone to S3 before the limit was reached
    assert objects(stack) == before
    assert open_uploads(stack) == []  # …and the 413 aborted it


def test_a_store_that_is_down_answers_503_naming_storage(stack):
    env = {**stack["env"], "S3_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}"}  # nothing listens there
    api, base = start_api(f"s3down{secrets.token_hex(3)}", env=env)
    try:
        with REAL_MODEL.open("rb") as handle:
            answer = httpx.post(f"{base}/api/v1/parts", files={"file": ("m.3dm", handle)}, timeout=60)
    finally:
        api.stop()
    assert answer.status_code == 503, answer.text
    assert answer.json()["dependency"] == "storage"


def test_no_log_line_holds_the_s3_secret(stack):
    secret = stack["env"]["S3_SECRET_ACCESS_KEY"]
    assert stack["api"].output() and stack["worker"].output()
    assert secret not in stack["api"].output()
    assert secret not in stack["worker"].output()
