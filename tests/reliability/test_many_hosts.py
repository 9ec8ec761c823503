"""Scenario 16, many hosts: 2 APIs, 3 workers and 2 beats that share only Valkey, PostgreSQL and
S3 (SeaweedFS), each with its own working directory, var/, storage dir and temp dir, as separate
hosts would. 200 part uploads over both APIs and a batch of 100 items; one worker's process group
is SIGKILLed mid-run, with default settings. Every part and item ends final, no host reads another's
disk, API, database and metrics agree, and only one beat schedules."""

from __future__ import annotations

import itertools
import random
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.conftest import TMP
from tests.reliability.helpers import Stack, kill_group_hard, redis_db_url, report
from tests.utils.metrics import scrape, value
from tests.utils.postgres import new_database
from tests.utils.processes import ManagedProcess, cli, wait_until

pytestmark = pytest.mark.integration

REAL = Path(__file__).parents[1] / "fixtures" / "real"
VALIDATE = "librarian.validation.validate_file"
PARTS = 200
ITEMS = 100
UPLOADED = {"filename": "part-"}  # the uploads, not the parts the batch's publish stage makes
FINAL_PARTS = {"validated", "rejected", "failed"}


def small_real_models() -> list[Path]:
    return sorted(p for p in REAL.glob("*.3dm") if p.stat().st_size <= 130_000)


def host_env(stack: Stack, host: str) -> dict[str, str]:
    """A host of its own: working directory, var/, storage dir and temp dir nobody else sees."""
    root = TMP / "reliability" / stack.name / host
    (root / "tmp").mkdir(parents=True, exist_ok=True)
    return {
        "VAR_DIR": str(root / "var"),
        "STORAGE_DIR": str(root / "storage"),  # unused on S3: must stay absent
        "TMPDIR": str(root / "tmp"),
        "LIBRARIAN_HOST_ROOT": str(root),
    }


def files_under(path: Path) -> list[Path]:
    return [p for p in path.rglob("*") if p.is_file()] if path.exists() else []


def test_two_apis_three_workers_two_beats_share_only_the_servers(broker, pg_server, s3_store):
    models = small_real_models()
    assert len(models) >= 8, models
    prefix = f"many-hosts-{random.randrange(1 << 30):x}"
    env = {
        **s3_store.server.env(s3_store.bucket, prefix),
        "RATE_LIMIT_UPLOADS": "100000/minute",
        "RATE_LIMIT_BATCHES": "100000/minute",
        "BEAT_LOCK_TIMEOUT": "5",
    }
    with Stack("many-hosts", redis_db_url(broker, 10), **env) as stack:
        stack.database_url = stack.env["DATABASE_URL"] = new_database(pg_server, "many_hosts")  # always PostgreSQL
        hosts = {name: host_env(stack, name) for name in ("api-a", "api-b", "w1", "w2", "w3", "beat-1", "beat-2")}
        apis = [stack.start_api(name, env=hosts[name])[1] for name in ("api-a", "api-b")]
        workers = {name: stack.start_worker(name, env=hosts[name]) for name in ("w1", "w2", "w3")}
        beats = []
        for name in ("beat-1", "beat-2"):  # the second one started by mistake
            beat = ManagedProcess(f"rel-many-hosts-{name}", cli("beat"), {**stack.env, **hosts[name]}, TMP / "logs")
            stack.processes.append(beat)
            beats.append(beat.start())
        clients = [httpx.Client(base_url=base, timeout=30) for base in apis]
        started = time.monotonic()
        try:
            batch = clients[1].post(
                "/api/v1/batches",
                files=[
                    ("files", (f"item-{i:03d}.3dm", model.read_bytes(), "application/octet-stream"))
                    for i, model in zip(range(ITEMS), itertools.cycle(models), strict=False)
                ],
            )
            assert batch.status_code == 202, batch.text
            batch_id = batch.json()["batch_id"]

            def upload(i: int) -> str:
                model = models[i % len(models)]
                answer = clients[i % 2].post(
                    "/api/v1/parts", files={"file": (f"part-{i:03d}-{model.name}", model.read_bytes())}
                )
                assert answer.status_code == 202, answer.text
                return answer.json()["part_id"]

            with ThreadPoolExecutor(8) as pool:
                part_ids = list(pool.map(upload, range(PARTS)))
            uploaded_in = time.monotonic() - started

            def finished_parts() -> int:
                return sum(
                    clients[0].get("/api/v1/parts", params={"status": status, "limit": 1, **UPLOADED}).json()["total"]
                    for status in FINAL_PARTS
                )

            wait_until(lambda: finished_parts() >= 40, timeout=120, message="no progress before the kill")
            victim = workers["w2"]
            kill_group_hard(victim)
            killed_at = time.monotonic()

            wait_until(lambda: finished_parts() == PARTS, timeout=300, message="parts not all final")
            # The enum is stored by member name (VALIDATED): the database's own view of the statuses.
            statuses = {
                str(s).lower(): n
                for s, n in stack.sql("SELECT status, COUNT(*) FROM part WHERE filename LIKE 'part-%' GROUP BY status")
            }
            wait_until(
                lambda: clients[0].get(f"/api/v1/batches/{batch_id}").json()["done"] == ITEMS,
                timeout=300,
                message="batch not all final",
            )
            elapsed = time.monotonic() - started
            batch_body = clients[0].get(f"/api/v1/batches/{batch_id}").json()

            # API and database agree, through either API.
            for client in clients:
                for status, count in statuses.items():
                    listed = client.get("/api/v1/parts", params={"status": status, "limit": 1, **UPLOADED}).json()
                    assert listed["total"] == count, (status, listed["total"], count)
            assert set(statuses) <= FINAL_PARTS and sum(statuses.values()) == PARTS, statuses
            assert batch_body["completed"] + batch_body["failed"] == ITEMS, batch_body
            assert all(s == "published" or s.endswith("_failed") for s in batch_body["by_status"]), batch_body
            seen = {clients[1].get(f"/api/v1/parts/{pid}").json()["status"] for pid in part_ids[:20]}
            assert seen <= FINAL_PARTS, seen

            # Metrics agree: each API counts the validations it sent, the survivors did work.
            sent = [
                value(
                    scrape(f"{base}/metrics"), "librarian_tasks_sent_total", task="librarian.validation.validate_file"
                )
                for base in apis
            ]
            assert sum(sent) == PARTS and min(sent) > 0, sent
            finished_by = {
                name: value(scrape(worker.metrics_url), "librarian_parts_finished_total")
                for name, worker in workers.items()
                if name != "w2"
            }
            assert all(n > 0 for n in finished_by.values()) and sum(finished_by.values()) <= PARTS, finished_by
            # The killed worker held messages (queues were full): a survivor put them back, not the 2 h timeout.
            restored = sum(
                value(scrape(w.metrics_url), "librarian_messages_recovered_total", reason="worker_dead")
                for name, w in workers.items()
                if name != "w2"
            )
            assert restored >= 1, restored

            # Nothing on any host's disk: every file is in S3, temp copies are gone.
            for name, host in hosts.items():
                assert not files_under(Path(host["STORAGE_DIR"])), name
                assert not files_under(Path(host["VAR_DIR"]) / "tmp" / "storage") or name == "w2", name
            stored = s3_store.server.keys(s3_store.bucket, prefix)
            assert len(stored) >= PARTS + ITEMS, len(stored)

            # One beat schedules, the other waits.
            leaders = [b for b in beats if "beat: Acquired lock" in b.output()]
            assert len(leaders) == 1, [b.tail(5) for b in beats]
            report(
                "many hosts",
                parts=PARTS,
                items=ITEMS,
                uploaded_in_s=round(uploaded_in, 1),
                all_final_in_s=round(elapsed, 1),
                after_kill_s=round(time.monotonic() - killed_at, 1),
                part_statuses=statuses,
                batch=batch_body.get("status"),
                sent_per_api=sent,
                finished_per_surviving_worker=finished_by,
                restored_from_the_killed_worker=restored,
            )
        finally:
            for client in clients:
                client.close()
