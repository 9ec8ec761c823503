"""STORAGE_URL chooses the store: unset or file:// a directory, s3:// a bucket; bad values refused at start-up."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from app.core.config import Settings
from app.storage import store_from
from app.storage.local import LocalStore
from app.storage.s3 import S3Store

SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"


def settings(**values: str) -> Settings:
    return Settings(_env_file=None, **values)


def test_unset_is_the_storage_dir_as_before(tmp_path):
    store = store_from(settings(STORAGE_DIR=str(tmp_path / "s"), STORAGE_URL=None))
    assert isinstance(store, LocalStore) and store.root == (tmp_path / "s").resolve()


def test_file_url_is_a_directory_absolute_or_relative(tmp_path):
    assert store_from(settings(STORAGE_URL=f"file://{tmp_path}/x")).root == tmp_path / "x"
    assert store_from(settings(STORAGE_URL="file://var/files")).root == Path("var/files").resolve()


def test_s3_url_is_bucket_and_prefix_and_describe_never_holds_the_secret():
    store = store_from(
        settings(
            STORAGE_URL="s3://models-bucket/librarian/prod/",
            S3_ENDPOINT_URL="https://abc.supabase.co/storage/v1/s3",
            S3_ACCESS_KEY_ID="AKIAEXAMPLE",
            S3_SECRET_ACCESS_KEY=SECRET,
            S3_REGION="eu-central-1",
        )
    )
    assert isinstance(store, S3Store)
    assert (store.bucket, store.prefix, store.region) == ("models-bucket", "librarian/prod/", "eu-central-1")
    assert store.object_key("parts/1/a.3dm") == "librarian/prod/parts/1/a.3dm"
    assert SECRET not in store.describe() and "models-bucket" in store.describe()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"STORAGE_URL": "gs://bucket"}, "file://PATH or s3://BUCKET"),
        ({"STORAGE_URL": f"s3://key:{SECRET}@bucket/p"}, "no credentials"),
        ({"STORAGE_URL": "s3://Bad_Bucket"}, "bucket name"),
        ({"STORAGE_URL": "s3://bucket", "S3_ACCESS_KEY_ID": "AKIA"}, "both"),
        (
            {
                "STORAGE_URL": "s3://bucket",
                "S3_ACCESS_KEY_ID": "AKIA",
                "S3_SECRET_ACCESS_KEY": "changethis",
                "ENVIRONMENT": "production",
                "API_TOKENS": "ci:" + "t" * 32,
            },
            "placeholder",
        ),
    ],
)
def test_bad_storage_settings_are_refused_without_echoing_a_secret(values, message):
    with pytest.raises(ValidationError) as info:
        settings(**values)
    assert message in str(info.value)
    assert SECRET not in str(info.value)
