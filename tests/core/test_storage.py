"""Storage paths: uploads never land outside the storage dir, whatever their name."""

from __future__ import annotations

import pytest

from app.core.storage import StoragePathError, resolve_in_storage, sanitize_filename


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("model.3dm", "model.3dm"),
        ("../../etc/passwd", "passwd"),
        ("..\\..\\windows\\win.ini", "win.ini"),
        ("/abs/path/part.3dm", "part.3dm"),
        ("Façade módulo 01.3dm", "Facade_modulo_01.3dm"),
        ("..", "upload"),
        ("", "upload"),
        ("a\x00b.3dm", "a_b.3dm"),
    ],
)
def test_sanitize_filename(name, expected):
    assert sanitize_filename(name) == expected


def test_sanitize_filename_bounds_the_length_and_keeps_the_extension():
    name = sanitize_filename("x" * 5000 + ".3dm")
    assert len(name) <= 120
    assert name.endswith(".3dm")


@pytest.mark.parametrize("path", ["../outside", "a/../../outside", "/etc/passwd"])
def test_resolve_in_storage_refuses_escapes(path):
    with pytest.raises(StoragePathError):
        resolve_in_storage(path)


def test_resolve_in_storage_accepts_nested_paths():
    from app.core.config import settings

    assert resolve_in_storage("a/b/c.3dm") == settings.storage_dir / "a" / "b" / "c.3dm"
