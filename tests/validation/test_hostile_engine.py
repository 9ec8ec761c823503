"""Hostile models: parent cycles, deep layer chains, huge names and string tables, coordinates and
tolerances out of range, self-containing blocks. The report comes back, bounded and strict JSON."""

from __future__ import annotations

import json
import math
import struct
import subprocess
import sys
import time
import uuid
import zlib
from pathlib import Path

import pytest
import rhino3dm as r3

from app.validation import RulesError, ValidationRules, docstrings, validate_path
from app.validation.blocks import cycles
from app.validation.layers import MAX_PATH_CHARS, full_paths, read_layer_tree
from app.validation.metadata import read_layers
from app.validation.reader import read_model
from tests.validation.reports import checked, validate

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "fixtures" / "real"
NIL = str(uuid.UUID(int=0))


def codes(report: dict) -> list[str]:
    return sorted(f["code"] for f in report["findings"])


def model(tolerance: float = 0.01) -> r3.File3dm:
    m = r3.File3dm()
    m.Settings.ModelUnitSystem = r3.UnitSystem.Millimeters
    m.Settings.ModelAbsoluteTolerance = tolerance
    return m


def add_points(m: r3.File3dm, points: list[tuple[float, float, float]], layer: int = 0) -> None:
    for k, xyz in enumerate(points):
        attrs = r3.ObjectAttributes()
        attrs.Name, attrs.LayerIndex = f"LIB-Z01-PT-{k:03d}", layer
        m.Objects.Add(r3.Point(r3.Point3d(*xyz)), attrs)


def write(m: r3.File3dm, path: Path, version: int = 8) -> Path:
    assert m.Write(str(path), version)
    return path


_CONTAINERS = {0x10000017, 0x20000081, 0x00027FFA, 0x00027FFD}  # user table, record, class, user data


def _rewrite(data: bytes, start: int, end: int, new: bytes) -> bytes:
    """A V8 file with data[start:end] replaced by `new`: every chunk around it grows by the difference,
    and the end-of-file mark records the new size. A chunk's CRC covers its own bytes, not its nested
    chunks: only a chunk the bytes lie directly in (its CRC matches its whole payload) gets a new one."""
    around = []
    for pos in range(start - 12, 31, -1):
        tcode, length = struct.unpack_from("<IQ", data, pos)
        stop = pos + 12 + length
        if tcode & 0x80000000 or not end <= stop <= len(data) - 20:
            continue
        stored = struct.unpack_from("<I", data, stop - 4)[0] if tcode & 0x8000 and length >= 4 else None
        if stored is not None and stored == zlib.crc32(data[pos + 12 : stop - 4]):
            around.append((pos, stop, True))
        elif tcode in _CONTAINERS or (tcode == 0x40008000 and stored == 0):
            around.append((pos, stop, False))
    delta = len(new) - (end - start)
    out = bytearray(data[:start] + new + data[end:])
    for pos, _, crc in sorted(around, key=lambda c: c[1] - c[0]):
        tcode, length = struct.unpack_from("<IQ", out, pos)
        struct.pack_into("<IQ", out, pos, tcode, length + delta)
        if crc:
            stop = pos + 12 + length + delta
            struct.pack_into("<I", out, stop - 4, zlib.crc32(out[pos + 12 : stop - 4]))
    struct.pack_into("<Q", out, len(out) - 8, len(out))
    return bytes(out)


# --- layer paths -------------------------------------------------------------------------------


def test_full_paths_follow_parents_and_report_each_cycle_once() -> None:
    # 0 A; 1 A::B; 2 (parent unknown) C; 3 <-> 4 a cycle; 5 under 4; 6 its own parent
    ids = [f"id{k}" for k in range(7)]
    parents = [NIL, "id0", "missing", "id4", "id3", "id4", "id6"]
    paths, parent_pos, found = full_paths(["A", "B", "C", "X", "Y", "Z", "S"], ids, parents)
    assert paths == ["A", "A::B", "C", "X", "Y", "Y::Z", "S"]
    assert parent_pos == [None, 0, None, 4, 3, 4, 6]
    assert sorted(sorted(c) for c in found) == [[3, 4], [6]]


def test_a_deep_chain_costs_linear_work_and_long_paths_are_cut() -> None:
    n = 20_000
    ids = [f"id{k}" for k in range(n)]
    started = time.perf_counter()
    paths, _, found = full_paths(["x" * 50] * n, ids, [NIL, *ids[:-1]])
    assert time.perf_counter() - started < 5  # quadratic string building would take minutes
    assert found == [] and paths[1] == "x" * 50 + "::" + "x" * 50
    assert len(paths[-1]) == MAX_PATH_CHARS and paths[-1].endswith("…")


def test_an_in_memory_two_layer_cycle_gets_own_names_and_one_finding() -> None:
    m = model()
    for name in ("A", "B", "C"):
        layer = r3.Layer()
        layer.Name = name
        m.Layers.Add(layer)
    a, b, c = (m.Layers[k] for k in range(3))
    a.ParentLayerId, b.ParentLayerId, c.ParentLayerId = b.Id, a.Id, b.Id
    layers, found = read_layer_tree(m)
    assert [layer["full_path"] for layer in layers] == ["A", "B", "B::C"]
    assert [layer["parent"] for layer in layers] == ["B", "A", "B"]
    assert [sorted(cycle) for cycle in found] == [[0, 1]]


@pytest.mark.parametrize("path", sorted(CORPUS.glob("*.3dm")), ids=lambda p: p.name)
def test_computed_full_paths_equal_rhino3dm_full_path_on_the_real_corpus(path: Path) -> None:
    try:
        loaded = read_model(path)
    except Exception:  # noqa: BLE001 (unreadable corpus files are covered by test_real_corpus)
        pytest.skip("unreadable")
    expected = [layer.FullPath for layer in loaded.model.Layers]  # no cycles in the corpus
    assert [layer["full_path"] for layer in read_layers(loaded.model)] == expected


def test_a_layer_that_is_its_own_parent_is_an_error_and_validation_returns(tmp_path: Path) -> None:
    m = model()
    layer = r3.Layer()
    layer.Name = "Loop"
    m.Layers.Add(layer)
    loop = m.Layers[0]
    loop.ParentLayerId = loop.Id  # openNURBS keeps this when reading; Layer.FullPath never returns on it
    add_points(m, [(k, 0, 0) for k in range(3)])
    path = write(m, tmp_path / "loop.3dm")
    script = (
        "import json, sys; from app.validation import validate_path; "
        "print(json.dumps(validate_path(sys.argv[1]), allow_nan=False))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = checked(json.loads(done.stdout))
    (cycle,) = [f for f in report["findings"] if f["code"] == "LAYER_CYCLE"]
    assert cycle["severity"] == "error" and not report["summary"]["passed"]
    assert cycle["details"]["names"] == ["Loop"] and cycle["details"]["layer_ids"] == [str(loop.Id)]
    assert report["metadata"]["layers"][0]["full_path"] == "Loop"


# --- bounded reports ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def huge_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1,000-deep chain of layers with 1,000-character names; 30 points with 100,000-character names
    on the deepest layer."""
    m = model()
    parent = None
    for k in range(1000):
        layer = r3.Layer()
        layer.Name = f"L{k:04d}" + "x" * 995
        if parent is not None:
            layer.ParentLayerId = parent
        parent = m.Layers[m.Layers.Add(layer)].Id
    for k in range(30):
        attrs = r3.ObjectAttributes()
        attrs.Name, attrs.LayerIndex = f"{k:05d}" + "n" * 99_995, 999
        m.Objects.Add(r3.Point(r3.Point3d(k, k, 0)), attrs)
    return write(m, tmp_path_factory.mktemp("huge") / "huge.3dm")


def test_deep_chain_and_huge_names_stay_under_the_cap_with_exact_counts(huge_model: Path) -> None:
    report = validate(huge_model)
    meta = report["metadata"]
    assert len(json.dumps(report)) <= 5_000_000
    assert meta["layer_count"] == 1000 and len(meta["layers"]) == 1000 and not meta["layers_truncated"]
    assert meta["layers"][999]["objects"] == 30 and meta["named_objects"]["count"] == 30
    assert all(len(layer["full_path"]) <= 500 and len(layer["name"]) <= 500 for layer in meta["layers"])
    assert all(len(name) <= 500 for name in meta["named_objects"]["names"])
    assert all(len(f["message"]) <= 500 for f in report["findings"])
    truncated = {
        f["details"]["finding_code"]: f["details"] for f in report["findings"] if f["code"] == "FINDINGS_TRUNCATED"
    }
    assert truncated["LAYER_NAME_PATTERN"]["total"] == 1000  # every layer name is too long for the pattern
    notes = {
        f["code"]: f["details"] for f in report["findings"] if f["code"] in ("LAYERS_TRUNCATED", "NAMES_TRUNCATED")
    }
    assert notes["LAYERS_TRUNCATED"] == {"list": "layers", "total": 1000, "listed": 1000, "shortened": 2999}
    assert notes["NAMES_TRUNCATED"] == {"list": "object names", "total": 30, "listed": 30, "shortened": 30}
    # 30 NAME_PATTERN errors; 1000 LAYER_NAME_PATTERN warnings; FINDINGS_TRUNCATED + two notes
    assert report["summary"]["counts"] == {"error": 30, "warning": 1000, "info": 3}


@pytest.mark.parametrize(("limit", "errors"), [(60_000, 30), (10_000, 1)])
def test_a_report_over_max_report_bytes_drops_findings_but_keeps_counts(
    huge_model: Path, limit: int, errors: int
) -> None:
    full = validate(huge_model)
    small = checked(validate_path(huge_model, rules={"max_report_bytes": limit}), limit)
    (note,) = [f for f in small["findings"] if f["code"] == "REPORT_TRUNCATED"]
    assert note["severity"] == "info" and note["details"]["findings_total"] == len(full["findings"])
    assert note["details"]["dropped"][:3] == ["finding details", "findings", "metadata lists"]
    expected = dict(full["summary"]["counts"], info=full["summary"]["counts"]["info"] + 1)
    assert small["summary"]["counts"] == expected and small["summary"]["passed"] is False
    assert small["metadata"]["layer_count"] == 1000 and small["metadata"]["layers"] == []
    kept = small["findings"][:-1]  # refilled once the metadata lists are gone, errors first
    assert note["details"]["findings_kept"] == len(kept) > 0 and "details" not in kept[0]
    assert sum(f["severity"] == "error" for f in kept) >= errors


def test_list_caps_are_rules_and_cutting_is_noted(huge_model: Path) -> None:
    report = validate(huge_model, rules={"max_listed_layers": 10, "max_listed_names": 5, "max_message_chars": 80})
    meta = report["metadata"]
    assert (meta["layer_count"], len(meta["layers"]), meta["layers_truncated"]) == (1000, 10, True)
    assert (meta["named_objects"]["count"], len(meta["named_objects"]["names"])) == (30, 5)
    assert all(len(f["message"]) <= 80 for f in report["findings"])
    notes = {f["code"]: f["details"] for f in report["findings"] if f["code"].endswith("S_TRUNCATED")}
    assert notes["LAYERS_TRUNCATED"]["listed"] == 10 and notes["NAMES_TRUNCATED"]["listed"] == 5


@pytest.mark.parametrize(
    ("field", "value"),
    [("max_report_bytes", 9_999), ("max_message_chars", 10), ("max_listed_layers", -1), ("max_listed_strings", -1)],
)
def test_caps_below_their_minimum_are_refused(field: str, value: int) -> None:
    with pytest.raises(RulesError) as caught:
        ValidationRules(**{field: value})
    assert caught.value.field == field


# --- document strings --------------------------------------------------------------------------

PAIRS = [("alpha", "one"), ("Section\\key", "wert ü"), ("empty", ""), ("emoji 😀", "astral 𝄞")]


@pytest.mark.parametrize("version", [4, 5, 8])
def test_the_string_table_parsed_from_the_file_equals_rhino3dm(tmp_path: Path, version: int) -> None:
    m = model()
    for key, value in PAIRS:
        m.Strings[key] = value
    add_points(m, [(0, 0, 0)])
    path = write(m, tmp_path / f"strings{version}.3dm", version)
    loaded = read_model(path)
    table = loaded.model.Strings
    expected = [tuple(table[k]) for k in range(len(table))]
    assert docstrings.parse_document_strings(path, loaded.archive_version) == expected


def _wide(text: str) -> bytes:
    units = (text + "\0").encode("utf-16-le")
    return struct.pack("<I", len(units) // 2) + units


def _chunk(own: bytes, nested: bytes = b"") -> bytes:
    """An anonymous chunk (8-byte length) as openNURBS writes user strings: its own bytes, nested
    chunks, then a CRC of its own bytes only."""
    payload = own + nested + struct.pack("<I", zlib.crc32(own))
    return struct.pack("<IQ", 0x40008000, len(payload)) + payload


@pytest.fixture(scope="module")
def many_strings(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """50,000 document strings. rhino3dm adds them in quadratic time too (200 s), so a file with
    one string gets its string list chunk rewritten with 50,000 entries; rhino3dm reads it back."""
    m = model()
    m.Strings["librarian-probe"] = "x"
    add_points(m, [(0, 0, 0)])
    path = write(m, tmp_path_factory.mktemp("strings") / "strings.3dm")
    data = path.read_bytes()
    start = data.find("librarian-probe".encode("utf-16-le")) - 48  # list chunk: header, version, count, entry header
    tcode, _, major, minor, count = struct.unpack_from("<IQiii", data, start)
    assert (tcode, major, minor, count) == (0x40008000, 1, 0, 1)
    end = start + 12 + struct.unpack_from("<Q", data, start + 4)[0]
    entries = b"".join(
        _chunk(struct.pack("<ii", 1, 0) + _wide(f"key {k:05d}") + _wide(f"value {k}")) for k in range(50_000)
    )
    path.write_bytes(_rewrite(data, start, end, _chunk(struct.pack("<iii", 1, 0, 50_000), entries)))
    assert len(r3.File3dm.Read(str(path)).Strings) == 50_000
    return path


def test_fifty_thousand_document_strings_are_read_once_and_capped(many_strings: Path) -> None:
    started = time.perf_counter()
    report = validate(many_strings)
    assert time.perf_counter() - started < 30  # reading them by index took 176 s
    meta = report["metadata"]
    assert meta["document_user_string_count"] == 50_000 and meta["document_user_strings_truncated"]
    assert list(meta["document_user_strings"].items()) == [(f"key {k:05d}", f"value {k}") for k in range(1000)]
    (note,) = [f for f in report["findings"] if f["code"] == "STRINGS_TRUNCATED"]
    assert note["details"] == {"list": "document user strings", "total": 50_000, "listed": 1000, "shortened": 0}


def test_when_the_file_cannot_be_parsed_rhino3dm_lists_a_bounded_number(
    many_strings: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(docstrings, "parse_document_strings", lambda path, version: None)
    meta = validate(many_strings)["metadata"]
    assert meta["document_user_string_count"] == 50_000
    assert len(meta["document_user_strings"]) == docstrings._BUDGET // 50_000


# --- coordinates and tolerances ----------------------------------------------------------------

FIVE = [(k, 2 * k, 0) for k in range(5)]


@pytest.mark.parametrize("far", [1.2e308, -2e15, 1e300])
def test_a_point_beyond_the_coordinate_limit_is_an_error_left_out_of_the_statistics(tmp_path: Path, far: float) -> None:
    m = model()
    add_points(m, [*FIVE, (far, 0, 0)])
    report = validate(write(m, tmp_path / "far.3dm"))
    assert codes(report) == ["COORDINATE_OUT_OF_RANGE"] and not report["summary"]["passed"]
    (item,) = report["findings"]
    assert item["details"]["values"] == [repr(far)] and item["details"]["box"]["min"] == [None, 0.0, 0.0]
    assert report["metadata"]["bounding_box"] == {"min": [0.0, 0.0, 0.0], "max": [4.0, 8.0, 0.0]}


def test_far_outside_maths_near_the_limit_stays_finite(tmp_path: Path) -> None:
    m = model()
    add_points(m, [*FIVE, (9.9e14, -9.9e14, 9.9e14)])
    report = validate(write(m, tmp_path / "near.3dm"))
    (item,) = report["findings"]
    assert item["code"] == "OBJECT_FAR_OUTSIDE" and math.isfinite(item["details"]["distance"])


@pytest.mark.parametrize(
    ("tolerance", "message"),
    [
        (math.inf, "not a finite number"),
        (math.nan, "not a finite number"),
        (1e12, "exceeds 1e+06 m"),
        (2e15, "model units"),
    ],
)
def test_a_tolerance_that_is_not_finite_or_absurd_is_invalid(tmp_path: Path, tolerance: float, message: str) -> None:
    m = model(tolerance)
    add_points(m, FIVE)
    report = validate(write(m, tmp_path / "tol.3dm"))
    (item,) = report["findings"]
    assert item["code"] == "TOLERANCE_INVALID" and message in item["message"]
    finite = tolerance if math.isfinite(tolerance) else None
    assert report["metadata"]["tolerances"]["absolute"] == finite


# --- blocks ------------------------------------------------------------------------------------


def test_cycles_finds_self_loops_and_longer_cycles_only() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": {"e"}, "s": {"s"}, "t": {"d"}}
    assert sorted(sorted(c) for c in cycles(edges)) == [["a", "b", "c"], ["s"]]
    chain = {str(k): {str(k + 1)} for k in range(50_000)}  # deep nesting: no recursion limit
    assert cycles(chain) == []


@pytest.mark.parametrize("depth", [1, 2])
def test_a_block_that_contains_itself_is_an_error(tmp_path: Path, depth: int) -> None:
    """depth 1: A places A; depth 2: A places B, B places A (made by re-pointing a placeholder id)."""
    m = model()
    placeholder = uuid.uuid4()
    origin, attrs = r3.Point3d(0, 0, 0), r3.ObjectAttributes()
    point = r3.Point(r3.Point3d(1, 1, 1))
    ref = r3.InstanceReference(placeholder, r3.Transform.Identity())
    first = m.InstanceDefinitions.FindIndex(
        m.InstanceDefinitions.Add("A", "", "", "", origin, (point, ref), (attrs, attrs))
    )
    target = first.Id
    if depth == 2:
        into_a = r3.InstanceReference(first.Id, r3.Transform.Identity())
        m.InstanceDefinitions.Add("B", "", "", "", origin, (into_a,), (attrs,))
        target = m.InstanceDefinitions.FindIndex(1).Id
    add_points(m, FIVE)
    m.Objects.AddInstanceObject(r3.InstanceReference(first.Id, r3.Transform.Identity()), attrs)
    path = write(m, tmp_path / "plain.3dm")
    looped = tmp_path / "looped.3dm"
    data = path.read_bytes()
    at = data.find(placeholder.bytes_le)
    looped.write_bytes(_rewrite(data, at, at + 16, target.bytes_le))  # rhino3dm reads it
    assert validate(path, rules={"severity": {"NAME_MISSING": "off"}})["summary"]["passed"]
    report = validate(looped, rules={"severity": {"NAME_MISSING": "off"}})
    (item,) = [f for f in report["findings"] if f["code"] == "BLOCK_CYCLE"]
    assert item["severity"] == "error" and not report["summary"]["passed"]
    assert sorted(item["details"]["names"]) == ["A", "B"][:depth] and item["details"]["size"] == depth
