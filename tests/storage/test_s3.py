"""The S3 store against a real S3 server (SeaweedFS): objects, multipart streaming, aborts, errors,
and the API's clean-up when a database row fails to commit."""

from __future__ import annotations

import hashlib
import secrets
import types
import uuid

import pytest
from sqlalchemy.exc import OperationalError

from app.api.uploads import ReceivedFile
from app.storage import StorageUnavailable
from app.storage.s3 import MIN_PART_SIZE, S3Store

pytestmark = pytest.mark.integration

MiB = 1024 * 1024


@pytest.fixture
def prefix() -> str:
    return f"t-{secrets.token_hex(4)}/"


@pytest.fixture
def store(s3_store, prefix, tmp_path) -> S3Store:
    server = s3_store.server
    return S3Store(
        bucket=s3_store.bucket,
        prefix=prefix,
        endpoint_url=server.endpoint,
        access_key_id=server.access_key,
        secret_access_key=server.secret_key,
        tmp_dir=tmp_path / "tmp",
        part_size=MIN_PART_SIZE,
    )


def leftovers(s3_store, prefix) -> tuple[list[str], list[str]]:
    """(objects, multipart uploads still open) under the prefix."""
    return s3_store.server.keys(s3_store.bucket, prefix), s3_store.server.pending_uploads(s3_store.bucket, prefix)


def test_put_read_delete(store, s3_store, prefix):
    store.put_bytes("parts/1/a.3dm", b"model bytes")
    assert s3_store.server.keys(s3_store.bucket, prefix) == [f"{prefix}parts/1/a.3dm"]
    assert store.exists("parts/1/a.3dm")
    assert store.read_bytes("parts/1/a.3dm") == b"model bytes"
    store.delete("parts/1/a.3dm")
    store.delete("parts/1/a.3dm")  # deleting what is gone is no error
    assert not store.exists("parts/1/a.3dm")
    assert leftovers(s3_store, prefix) == ([], [])


def stream(upload, data: bytes, chunk: int = 64 * 1024, *, on_flush=None) -> None:
    """Feed `data` as the API does: writes, and a flush whenever a part is ready."""
    for start in range(0, len(data), chunk):
        upload.write(data[start : start + chunk])
        if upload.pending():
            upload.flush()
            if on_flush:
                on_flush()


def test_an_upload_over_one_part_streams_as_a_multipart_upload(store, s3_store, prefix):
    data = secrets.token_bytes(11 * MiB + 123)  # two full 5 MiB parts and a short last one
    upload = store.open_upload("batches/b/i/big.3dm")
    seen_open = []
    stream(upload, data, on_flush=lambda: seen_open.append(leftovers(s3_store, prefix)))
    assert seen_open[0] == ([], [f"{prefix}batches/b/i/big.3dm"])  # parts went out before the end
    assert len(upload._buffer) < MIN_PART_SIZE  # never more than a part held in memory
    upload.commit()
    assert leftovers(s3_store, prefix) == ([f"{prefix}batches/b/i/big.3dm"], [])
    with store.materialise("batches/b/i/big.3dm") as path:
        assert hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(data).digest()
        copy = path
    assert not copy.exists()  # the temporary copy is gone with the block


def test_discarding_a_multipart_upload_halfway_leaves_no_object_and_no_open_upload(store, s3_store, prefix):
    upload = store.open_upload("parts/2/refused.3dm")
    stream(upload, secrets.token_bytes(7 * MiB))
    assert leftovers(s3_store, prefix)[1] == [f"{prefix}parts/2/refused.3dm"]
    upload.discard()
    assert leftovers(s3_store, prefix) == ([], [])


def test_discarding_a_committed_upload_deletes_the_object(store, s3_store, prefix):
    upload = store.open_upload("parts/3/small.3dm")
    stream(upload, b"small model")
    upload.commit()
    assert store.exists("parts/3/small.3dm")
    upload.discard()
    assert leftovers(s3_store, prefix) == ([], [])


def test_materialise_removes_its_copy_even_when_the_block_fails_and_a_missing_key_is_file_not_found(store):
    store.put_bytes("k/m.3dm", b"abc")

    def read_then_crash() -> None:
        with store.materialise("k/m.3dm") as path:
            assert path.read_bytes() == b"abc"
            raise RuntimeError("the reader crashed")

    with pytest.raises(RuntimeError):
        read_then_crash()
    assert list(store.tmp_dir.iterdir()) == []
    with pytest.raises(FileNotFoundError), store.materialise("k/none.3dm"):
        pass
    assert list(store.tmp_dir.iterdir()) == []


def test_a_store_that_is_down_or_refuses_the_secret_is_storage_unavailable_without_the_secret(s3_store, tmp_path):
    from tests.utils.processes import free_port

    down = S3Store(
        bucket="b",
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        access_key_id="k",
        secret_access_key="s" * 20,
        tmp_dir=tmp_path,
    )
    with pytest.raises(StorageUnavailable) as info:
        down.put_bytes("a.3dm", b"x")
    assert info.value.dependency == "storage" and isinstance(info.value, ConnectionError)

    wrong_secret = secrets.token_hex(20)
    refused = S3Store(
        bucket=s3_store.bucket,
        endpoint_url=s3_store.server.endpoint,
        access_key_id=s3_store.server.access_key,
        secret_access_key=wrong_secret,
        tmp_dir=tmp_path,
    )
    with pytest.raises(StorageUnavailable) as info:
        refused.put_bytes("a.3dm", b"x")
    assert info.value.reason == "PutObject: SignatureDoesNotMatch"
    assert wrong_secret not in repr(info.value) and wrong_secret not in str(info.value)


def received(store, key: str, data: bytes) -> ReceivedFile:
    """A file as app/api/uploads.py hands it to a route: streamed and flushed, not committed."""
    upload = store.open_upload(key)
    stream(upload, data)
    upload.close()
    if upload.pending():
        upload.flush()
    return ReceivedFile("file", key.rsplit("/", 1)[-1], uuid.uuid4(), upload, size=len(data))


def db_down(*_, **__):
    raise OperationalError("INSERT", {}, Exception("database is locked"))


def test_a_part_whose_row_fails_to_commit_leaves_no_object(store, s3_store, prefix, monkeypatch):
    from app.api.routes import parts

    monkeypatch.setattr(parts.rulesets, "resolve", lambda session, name: object())
    monkeypatch.setattr(parts.crud, "create_part", db_down)
    files = [received(store, "parts/4/model.3dm", secrets.token_bytes(6 * MiB))]  # multipart, completed
    assert store.exists("parts/4/model.3dm")
    request = types.SimpleNamespace(headers={})
    with pytest.raises(OperationalError):
        parts._store_and_enqueue(request, files, {}, None, None, None, None)
    assert leftovers(s3_store, prefix) == ([], [])


def test_a_batch_whose_rows_fail_to_commit_leaves_no_object(store, s3_store, prefix, monkeypatch):
    from app.api.routes import batches

    monkeypatch.setattr(batches.rulesets, "resolve", lambda session, name: types.SimpleNamespace(name="d", version=1))
    monkeypatch.setattr(batches.crud, "create_batch", db_down)
    files = [received(store, f"batches/5/{n}/m.3dm", secrets.token_bytes(1000)) for n in range(3)]
    assert len(leftovers(s3_store, prefix)[0]) == 3
    request = types.SimpleNamespace(headers={})
    with pytest.raises(OperationalError):
        batches._store_and_enqueue(request, uuid.uuid4(), files, {}, None, None, None, None)
    assert leftovers(s3_store, prefix) == ([], [])
