"""An S3-compatible store (AWS S3, MinIO, SeaweedFS, Supabase Storage): STORAGE_URL=s3://bucket/prefix.

Why boto3 and not obstore: obstore (Rust, object_store) is faster, but boto3's multipart calls and
their abort semantics (AbortMultipartUpload frees every uploaded part; ListMultipartUploads shows
what is left) are the reference that S3-compatible servers are tested against, and exactly what an
upload refused halfway (413) relies on to leave nothing behind.

An upload is buffered up to one part (PART_SIZE, at least S3's 5 MiB minimum); a file that ends
within it is one PutObject, a larger one a multipart upload whose parts go out as they fill. Errors
become StorageUnavailable (503 in the API, retried by tasks) naming the S3 error code or the
exception type; a missing object is FileNotFoundError. No log line or error holds a credential.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import structlog
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from app.core.config import mask_url
from app.storage.base import ObjectStore, StorageUnavailable, Upload, check_key
from app.storage.tempfiles import temp_path

log = structlog.get_logger("librarian.storage")

MIN_PART_SIZE = 5 * 1024 * 1024  # S3's minimum for every part but the last
PART_SIZE = 8 * 1024 * 1024
MISSING = {"NoSuchKey", "404", "NotFound"}


@contextlib.contextmanager
def s3_errors(action: str) -> Iterator[None]:
    """botocore's errors as ours: the S3 error code or the exception type, nothing else."""
    try:
        yield
    except ClientError as exc:
        code = str(
            exc.response.get("Error", {}).get("Code") or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        )
        if code in MISSING:
            raise FileNotFoundError(f"stored object is missing ({action})") from None
        raise StorageUnavailable(f"{action}: {code}") from None
    except BotoCoreError as exc:  # no connection, timeouts, no credentials
        raise StorageUnavailable(f"{action}: {type(exc).__name__}") from None


class S3Upload(Upload):
    def __init__(self, store: S3Store, key: str) -> None:
        super().__init__(key)
        self._store = store
        self._object_key = store.object_key(key)
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self._closed = False
        self._stored = False  # the object exists under its key (PutObject or CompleteMultipartUpload done)
        self._discarded = False

    def write(self, data: bytes) -> None:
        assert not self._closed, "write after close"
        self._buffer += data
        self.size += len(data)

    def close(self) -> None:
        self._closed = True

    def pending(self) -> bool:
        if self._discarded:
            return False
        return len(self._buffer) >= self._store.part_size or (self._closed and not self._stored)

    def flush(self) -> None:
        if self._discarded:
            raise RuntimeError(f"upload {self.key!r} was discarded")
        client, bucket = self._store.client(), self._store.bucket
        size = self._store.part_size
        single = self._closed and self._upload_id is None and len(self._buffer) <= size  # one PutObject
        while not single and len(self._buffer) >= size:
            if self._upload_id is None:
                with s3_errors("CreateMultipartUpload"):
                    created = client.create_multipart_upload(Bucket=bucket, Key=self._object_key)
                self._upload_id = created["UploadId"]
            self._upload_part(bytes(self._buffer[:size]))
            del self._buffer[:size]
        if not self._closed or self._stored:
            return
        if self._upload_id is None:  # the whole file fitted in one part
            with s3_errors("PutObject"):
                client.put_object(Bucket=bucket, Key=self._object_key, Body=bytes(self._buffer))
        else:
            if self._buffer or not self._parts:
                self._upload_part(bytes(self._buffer))
            with s3_errors("CompleteMultipartUpload"):
                client.complete_multipart_upload(
                    Bucket=bucket,
                    Key=self._object_key,
                    UploadId=self._upload_id,
                    MultipartUpload={"Parts": self._parts},
                )
            self._upload_id = None
        self._buffer = bytearray()
        self._stored = True

    def _upload_part(self, body: bytes) -> None:
        number = len(self._parts) + 1
        with s3_errors("UploadPart"):
            answer = self._store.client().upload_part(
                Bucket=self._store.bucket, Key=self._object_key, UploadId=self._upload_id, PartNumber=number, Body=body
            )
        self._parts.append({"PartNumber": number, "ETag": answer["ETag"]})

    def commit(self) -> None:
        self.close()
        self.flush()

    def discard(self) -> None:
        self._closed, self._discarded, self._buffer = True, True, bytearray()
        if self._upload_id is not None:
            upload_id, self._upload_id = self._upload_id, None
            try:
                with s3_errors("AbortMultipartUpload"):
                    self._store.client().abort_multipart_upload(
                        Bucket=self._store.bucket, Key=self._object_key, UploadId=upload_id
                    )
            except StorageUnavailable as exc:  # the bucket's lifecycle rule for incomplete uploads ends it
                log.warning("multipart upload not aborted", key=self.key, reason=exc.reason)
        if self._stored:
            self._store.delete(self.key)
            self._stored = False


class S3Store(ObjectStore):
    def __init__(
        self,
        *,
        bucket: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        region: str = "us-east-1",
        tmp_dir: Path,
        part_size: int = PART_SIZE,
    ) -> None:
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes (S3's minimum part)")
        self.bucket, self.prefix, self.endpoint_url, self.region = bucket, prefix, endpoint_url, region
        self.tmp_dir, self.part_size = tmp_dir, part_size
        self._credentials = (access_key_id, secret_access_key)
        self._lock = threading.Lock()
        self._clients: dict[int, Any] = {}

    def client(self) -> Any:
        """One boto3 client per process (clients are thread-safe, but their pools must not cross fork())."""
        pid = os.getpid()
        client = self._clients.get(pid)
        if client is None:
            with self._lock:
                client = self._clients.get(pid)
                if client is None:
                    client = self._clients[pid] = self._new_client()
        return client

    def _new_client(self) -> Any:
        access_key_id, secret_access_key = self._credentials
        config = Config(
            # Path-style (host/bucket/key) for every S3-compatible server; AWS chooses itself.
            s3={"addressing_style": "path" if self.endpoint_url else "auto"},
            connect_timeout=3,
            max_pool_connections=32,  # the API's thread pool sends parts of many uploads at once
            read_timeout=60,
            retries={"max_attempts": 3, "mode": "standard"},
            # botocore >= 1.36 adds CRC checksums to every upload by default; several S3-compatible
            # servers refuse them. Only where the API requires one.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        session = boto3.session.Session()
        return session.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            config=config,
        )

    def object_key(self, key: str) -> str:
        return self.prefix + check_key(key)

    def open_upload(self, key: str) -> S3Upload:
        return S3Upload(self, key)

    def delete(self, key: str) -> None:
        with s3_errors("DeleteObject"):
            self.client().delete_object(Bucket=self.bucket, Key=self.object_key(key))

    def exists(self, key: str) -> bool:
        try:
            with s3_errors("HeadObject"):
                self.client().head_object(Bucket=self.bucket, Key=self.object_key(key))
        except FileNotFoundError:
            return False
        return True

    @contextlib.contextmanager
    def _materialise(self, key: str) -> Iterator[Path]:
        object_key = self.object_key(key)
        with temp_path(self.tmp_dir, suffix=Path(key).suffix) as path:
            with s3_errors("GetObject"):
                body = self.client().get_object(Bucket=self.bucket, Key=object_key)["Body"]
                with path.open("wb") as handle:
                    for chunk in body.iter_chunks(1 << 20):
                        handle.write(chunk)
            yield path

    def materialise(self, key: str) -> contextlib.AbstractContextManager[Path]:
        return self._materialise(key)

    def describe(self) -> str:
        where = f" at {mask_url(self.endpoint_url)}" if self.endpoint_url else ""
        return f"s3://{self.bucket}/{self.prefix}{where}"
