"""Reading: a readable .3dm loads; anything else is UnreadableModelError with a precise reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.validation import ModelFileMissingError, UnreadableModelError
from app.validation.reader import read_model
from tests.validation.reports import validate


def _reject(path: Path) -> UnreadableModelError:
    with pytest.raises(UnreadableModelError) as info:
        read_model(path)
    assert info.value.reason == str(info.value)
    return info.value


def test_valid_model_loads_with_its_object_records(models: dict[str, Path]) -> None:
    loaded = read_model(models["valid_part"])
    assert len(loaded.model.Objects) == 5
    assert loaded.object_records == 5
    assert loaded.archive_version == 80  # the header's version field: "      80" for Rhino 8
    assert loaded.size == models["valid_part"].stat().st_size


def test_missing_file_is_distinguished_from_unreadable(tmp_path: Path) -> None:
    err = _reject(tmp_path / "nope.3dm")
    assert isinstance(err, ModelFileMissingError)
    assert err.code == "missing"
    assert "not found" in err.reason


def test_directory_is_not_a_file(tmp_path: Path) -> None:
    err = _reject(tmp_path)
    assert (err.code, isinstance(err, ModelFileMissingError)) == ("not_a_file", False)
    assert "directory" in err.reason


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.3dm"
    path.write_bytes(b"")
    assert _reject(path).code == "empty"


def test_png_with_3dm_suffix_is_named_as_png(models: dict[str, Path]) -> None:
    err = _reject(models["not_3dm"])
    assert err.code == "not_3dm"
    assert "PNG" in err.reason


def test_text_file_is_named_as_text(tmp_path: Path) -> None:
    path = tmp_path / "notes.3dm"
    path.write_text("just some notes\nabout a wall\n")
    err = _reject(path)
    assert (err.code, "text" in err.reason) == ("not_3dm", True)


def test_header_with_random_bytes_is_corrupt(models: dict[str, Path]) -> None:
    err = _reject(models["corrupt_bytes"])
    assert err.code == "corrupt"


def test_file_cut_in_half_is_truncated(models: dict[str, Path]) -> None:
    err = _reject(models["truncated"])
    assert err.code == "truncated"
    assert "truncated" in err.reason


@pytest.mark.parametrize("keep", [10, 24, 31, 32, 100, -20, -1])
def test_any_truncation_is_rejected_as_truncated(models: dict[str, Path], tmp_path: Path, keep: int) -> None:
    data = models["valid_part"].read_bytes()
    path = tmp_path / "cut.3dm"
    path.write_bytes(data[:keep])
    assert _reject(path).code == "truncated"


def test_trailing_garbage_after_end_mark_is_corrupt(models: dict[str, Path], tmp_path: Path) -> None:
    path = tmp_path / "tail.3dm"
    path.write_bytes(models["valid_part"].read_bytes() + b"extra")
    err = _reject(path)
    assert err.code == "corrupt"
    assert "end-of-file mark" in err.reason


def test_damaged_chunk_length_in_a_complete_file_is_corrupt(models: dict[str, Path], tmp_path: Path) -> None:
    data = bytearray(models["valid_part"].read_bytes())
    data[36:44] = (10**12).to_bytes(8, "little")  # length of the first chunk (after the 32-byte header)
    path = tmp_path / "length.3dm"
    path.write_bytes(bytes(data))
    err = _reject(path)
    assert err.code == "corrupt"
    assert "chunk at byte 32" in err.reason


def test_bad_version_field(models: dict[str, Path], tmp_path: Path) -> None:
    data = bytearray(models["valid_part"].read_bytes())
    data[24:32] = b"  banana"
    path = tmp_path / "version.3dm"
    path.write_bytes(bytes(data))
    assert _reject(path).code == "bad_header"


def test_validate_path_raises_the_same_error_with_reason(models: dict[str, Path]) -> None:
    with pytest.raises(UnreadableModelError) as info:
        validate(models["truncated"])
    assert info.value.reason.startswith("truncated")
