"""Model files, by key, in the store STORAGE_URL names: a local directory or an S3-compatible bucket.

`get_store()` is the one store of this process (API and workers alike); `sweep_temp()` runs at
worker start (app/worker/signals.py).
"""

from __future__ import annotations

from app.core.config import Settings, settings
from app.storage import tempfiles
from app.storage.base import ObjectStore, StorageUnavailable, Upload, check_key
from app.storage.local import LocalStore

__all__ = ["ObjectStore", "StorageUnavailable", "Upload", "check_key", "get_store", "store_from", "sweep_temp"]

_store: ObjectStore | None = None


def store_from(config: Settings) -> ObjectStore:
    location = config.s3_location
    if location is None:
        return LocalStore(config.storage_dir)
    bucket, prefix = location
    from app.storage.s3 import S3Store  # noqa: PLC0415 (boto3 costs ~0.15 s at every start; only s3:// needs it)

    return S3Store(
        bucket=bucket,
        prefix=prefix,
        endpoint_url=config.S3_ENDPOINT_URL,
        access_key_id=config.S3_ACCESS_KEY_ID,
        secret_access_key=config.S3_SECRET_ACCESS_KEY.get_secret_value() or None,
        region=config.S3_REGION,
        tmp_dir=config.storage_tmp_dir,
    )


def get_store() -> ObjectStore:
    global _store
    if _store is None:
        _store = store_from(settings)
    return _store


def sweep_temp() -> int:
    """Remove the temporary copies that dead processes left (a SIGKILLed task); returns how many."""
    return tempfiles.sweep(settings.storage_tmp_dir, max_age_s=settings.TASK_TIME_LIMIT)
