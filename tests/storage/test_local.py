"""The local store: keys under its root only, an upload visible only once committed, nothing left by discard."""

from __future__ import annotations

import pytest

from app.core.storage import StoragePathError
from app.storage.local import INCOMING, LocalStore


@pytest.fixture
def store(tmp_path):
    return LocalStore(tmp_path / "storage")


def files_under(root) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_put_read_delete(store):
    store.put_bytes("parts/1/a.3dm", b"model bytes")
    assert store.exists("parts/1/a.3dm")
    assert store.read_bytes("parts/1/a.3dm") == b"model bytes"
    store.delete("parts/1/a.3dm")
    store.delete("parts/1/a.3dm")  # deleting what is gone is no error
    assert not store.exists("parts/1/a.3dm")


def test_an_upload_is_invisible_until_committed_and_discard_removes_it_before_and_after(store):
    upload = store.open_upload("parts/2/b.3dm")
    upload.write(b"x" * 1000)
    upload.close()
    assert not store.exists("parts/2/b.3dm")
    assert files_under(store.root) == {f"{INCOMING}/{upload.temp_path.name}"}
    upload.commit()
    assert store.read_bytes("parts/2/b.3dm") == b"x" * 1000 and upload.size == 1000
    upload.discard()
    assert files_under(store.root) == set()

    aborted = store.open_upload("parts/3/c.3dm")
    aborted.write(b"half")
    aborted.discard()
    assert files_under(store.root) == set()


def test_materialise_yields_the_file_itself_and_a_missing_key_is_file_not_found(store):
    store.put_bytes("k/m.3dm", b"abc")
    with store.materialise("k/m.3dm") as path:
        assert path == store.root / "k" / "m.3dm" and path.read_bytes() == b"abc"
    assert store.exists("k/m.3dm")  # the store's own file, not a copy: still there
    with pytest.raises(FileNotFoundError), store.materialise("k/none.3dm"):
        pass


@pytest.mark.parametrize("key", ["../outside", "a/../../outside", "/etc/passwd", "a/./b", ""])
def test_keys_never_leave_the_root(store, key):
    with pytest.raises(StoragePathError):
        store.open_upload(key)
    with pytest.raises(StoragePathError):
        store.materialise(key).__enter__()
