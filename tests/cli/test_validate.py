"""`librarian validate`: the real CLI in a subprocess, with no Redis, Celery or database reachable."""

from __future__ import annotations

import json
import os
import pty
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from app.validation import build_ruleset, validate_path
from tests.utils.processes import ROOT, free_port

UNICODE_NAME = "Façade plan 01 ü.3dm"
LENIENT = 'name_pattern = ".+"\n'


def no_server_env(rulesets_dir: Path) -> dict[str, str]:
    """Broker and result backend on a port nobody listens on, a database nobody can create."""
    closed = f"redis://127.0.0.1:{free_port()}/0"
    return {
        **os.environ,
        "REDIS_URL": closed,
        "CELERY_BROKER_URL": closed,
        "CELERY_RESULT_BACKEND": closed,
        "DATABASE_URL": "sqlite:////proc/no-database-here/librarian.db",
        "RULESETS_DIR": str(rulesets_dir),
    }


def librarian_validate(*args: Any, rulesets_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli.main", "validate", *map(str, args)],
        env=no_server_env(rulesets_dir),
        cwd=ROOT,
        capture_output=True,
        encoding="utf-8",
        timeout=180,
    )


def without_durations(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_durations(v) for k, v in value.items() if k != "duration_seconds"}
    if isinstance(value, list):
        return [without_durations(v) for v in value]
    return value


@pytest.fixture
def rulesets(tmp_path: Path) -> Path:
    """An empty RULESETS_DIR: the default ruleset is the built-in one."""
    directory = tmp_path / "rulesets"
    directory.mkdir()
    return directory


@pytest.fixture
def text_file(tmp_path: Path) -> Path:
    path = tmp_path / "notes.3dm"
    path.write_text("these are meeting notes, not a model\n")
    return path


def test_a_passing_model_exits_0(models, rulesets):
    result = librarian_validate(models["valid_part"], rulesets_dir=rulesets)
    assert result.returncode == 0, result.stdout + result.stderr
    assert str(models["valid_part"]) in result.stdout
    assert "1 file: 1 passed" in result.stdout


def test_a_rejected_model_exits_1_and_shows_its_first_errors(models, rulesets):
    result = librarian_validate(models["bad_names"], rulesets_dir=rulesets)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "rejected" in result.stdout
    assert "NAME_PATTERN object name 'wall 1'" in result.stdout


def test_a_text_file_named_3dm_is_unreadable_and_exits_2(text_file, rulesets):
    result = librarian_validate(text_file, rulesets_dir=rulesets)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "unreadable" in result.stdout
    assert "not a .3dm file: content looks like text" in result.stdout


def test_unreadable_wins_over_rejected_and_json_keeps_the_input_order(models, text_file, tmp_path, rulesets):
    missing = tmp_path / "missing.3dm"
    result = librarian_validate(
        "--format", "json", models["valid_part"], models["bad_names"], text_file, missing, rulesets_dir=rulesets
    )
    assert result.returncode == 2, result.stderr
    entries = json.loads(result.stdout)
    assert [(e["file"], e["status"]) for e in entries] == [
        (str(models["valid_part"]), "passed"),
        (str(models["bad_names"]), "rejected"),
        (str(text_file), "unreadable"),
        (str(missing), "unreadable"),
    ]
    assert [e["error"] and e["error"]["code"] for e in entries] == [None, None, "not_3dm", "missing"]
    assert entries[2]["report"] is None


def test_json_reports_are_the_engines_reports(models, rulesets):
    files = [models["bad_names"], models["open_brep"], models["valid_part"]]
    result = librarian_validate("--format", "json", *files, rulesets_dir=rulesets)
    entries = json.loads(result.stdout)
    builtin = build_ruleset("default", {})
    for entry, path in zip(entries, files, strict=True):
        expected = validate_path(path, ruleset=builtin, file_name=path.name)
        assert entry["report"]["summary"]["objects"] == expected["summary"]["objects"]
        assert [f["code"] for f in entry["report"]["findings"]] == [f["code"] for f in expected["findings"]]
        assert without_durations(entry["report"]) == without_durations(expected)
    assert entries[0]["report"]["ruleset"] == {"name": "default", "version": None, "sha256": builtin.sha256}


def test_junit_has_one_testcase_per_file_with_failures_and_errors(models, text_file, tmp_path, rulesets):
    output = tmp_path / "junit.xml"
    files = [models["bad_names"], text_file, models["far_outlier"], models["valid_part"]]
    result = librarian_validate("--format", "junit", "--output", output, *files, rulesets_dir=rulesets)
    assert result.returncode == 2, result.stderr
    assert "4 files: 2 passed, 1 rejected, 1 unreadable" in result.stdout  # the table still goes to stdout
    suite = ET.parse(output).getroot().find("testsuite")
    assert suite is not None and suite.get("name") == "librarian validate"
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("4", "1", "1")
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == [str(f) for f in files]
    assert {c.get("classname") for c in cases} == {"librarian.validate"}
    failure = cases[0].find("failure")
    assert failure is not None and (failure.get("type"), failure.get("message")) == ("rejected", "2 errors")
    assert failure.text.count("NAME_PATTERN") == 2
    assert "NAME_DUPLICATE" in cases[0].findtext("system-out")
    error = cases[1].find("error")
    assert error is not None and error.get("type") == "not_3dm"
    assert "content looks like text" in error.get("message")
    assert cases[2].find("failure") is None and "OBJECT_FAR_OUTSIDE" in cases[2].findtext("system-out")
    assert list(cases[3]) == []


def test_a_rules_file_with_a_looser_name_pattern_passes_a_rejected_model(models, tmp_path, rulesets):
    rules = tmp_path / "lenient.toml"
    rules.write_text(LENIENT)
    result = librarian_validate("--format", "json", "--rules", rules, models["bad_names"], rulesets_dir=rulesets)
    assert result.returncode == 0, result.stdout + result.stderr
    [entry] = json.loads(result.stdout)
    assert entry["status"] == "passed"
    assert entry["report"]["ruleset"]["name"] == "lenient"
    assert entry["report"]["rules"]["name_pattern"] == ".+"


def test_a_ruleset_is_found_by_name_in_rulesets_dir(models, rulesets):
    (rulesets / "lenient.toml").write_text(LENIENT)
    assert librarian_validate("--ruleset", "lenient", models["bad_names"], rulesets_dir=rulesets).returncode == 0
    unknown = librarian_validate("--ruleset", "strict", models["bad_names"], rulesets_dir=rulesets)
    assert unknown.returncode == 2
    assert "unknown ruleset 'strict'" in unknown.stderr and "lenient" in unknown.stderr


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('name_pattern = "("\n', "name_pattern: invalid regular expression"),
        ("colour = 1\n", "colour: unknown rule"),
        ("name_pattern = \n", "not valid TOML"),
    ],
)
def test_a_bad_rules_file_exits_2_naming_file_and_field(models, tmp_path, rulesets, content, expected):
    rules = tmp_path / "team.toml"
    rules.write_text(content)
    result = librarian_validate("--rules", rules, models["valid_part"], rulesets_dir=rulesets)
    assert result.returncode == 2
    assert f"{rules}: {expected}" in result.stderr
    assert result.stdout == ""


def test_a_bad_file_in_rulesets_dir_stops_the_run(models, rulesets):
    (rulesets / "lenient.toml").write_text(LENIENT)
    (rulesets / "broken.toml").write_text('layer_pattern = "[A-"\n')
    result = librarian_validate("--ruleset", "lenient", models["valid_part"], rulesets_dir=rulesets)
    assert result.returncode == 2
    assert f"{rulesets / 'broken.toml'}: layer_pattern: invalid regular expression" in result.stderr


def test_jobs_2_gives_the_same_output_as_jobs_1_in_input_order(models, text_file, rulesets):
    files = [
        models["open_brep"],
        text_file,
        models["valid_part"],
        models["bad_names"],
        models["large_model"],
        models["far_outlier"],
    ]
    serial = librarian_validate("--format", "json", "--jobs", "1", *files, rulesets_dir=rulesets)
    parallel = librarian_validate("--format", "json", "--jobs", "2", *files, rulesets_dir=rulesets)
    assert serial.returncode == parallel.returncode == 2
    assert [e["file"] for e in json.loads(parallel.stdout)] == [str(f) for f in files]
    assert without_durations(json.loads(parallel.stdout)) == without_durations(json.loads(serial.stdout))


def test_a_directory_means_every_3dm_under_it_sorted(models, tmp_path, rulesets):
    tree = tmp_path / "tree"
    for relative in ("b.3dm", "a/z.3DM", "a/sub/c.3dm", "c.3dm"):
        (tree / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(models["valid_part"], tree / relative)
    (tree / "readme.txt").write_text("not a model")
    result = librarian_validate("--format", "json", tree, rulesets_dir=rulesets)
    assert result.returncode == 0, result.stderr
    assert [e["file"] for e in json.loads(result.stdout)] == [
        str(tree / r) for r in ("a/sub/c.3dm", "a/z.3DM", "b.3dm", "c.3dm")
    ]


def test_an_empty_directory_exits_2(tmp_path, rulesets):
    result = librarian_validate(tmp_path, rulesets_dir=rulesets)
    assert result.returncode == 2
    assert f"no .3dm files in directory {tmp_path}" in result.stderr


def test_output_without_a_machine_format_exits_2(models, tmp_path, rulesets):
    result = librarian_validate("--output", tmp_path / "out.txt", models["valid_part"], rulesets_dir=rulesets)
    assert result.returncode == 2
    assert "--output needs --format json or junit" in result.stderr
    assert not (tmp_path / "out.txt").exists()


def test_a_name_with_spaces_and_accents_is_shown_unchanged(models, tmp_path, rulesets):
    model = tmp_path / UNICODE_NAME
    shutil.copy(models["valid_part"], model)
    as_json = librarian_validate("--format", "json", model, rulesets_dir=rulesets)
    [entry] = json.loads(as_json.stdout)
    assert entry["file"] == str(model)
    assert entry["report"]["metadata"]["file_name"] == UNICODE_NAME
    assert str(model) in librarian_validate(model, rulesets_dir=rulesets).stdout
    junit = librarian_validate("--format", "junit", model, rulesets_dir=rulesets)
    assert ET.fromstring(junit.stdout.encode()).find("testsuite/testcase").get("name") == str(model)


def test_validating_imports_no_broker_worker_or_database_module(models, rulesets):
    script = (
        "import sys\n"
        "from app.cli.main import main\n"
        "try:\n"
        f"    main(['validate', {str(models['valid_part'])!r}])\n"
        "except SystemExit as exit:\n"
        "    print('exit', exit.code)\n"
        "top = {name.split('.')[0] for name in sys.modules}\n"
        "print('loaded', sorted(top & {'celery', 'kombu', 'redis', 'sqlalchemy', 'sqlmodel'}))\n"
        "print('loaded', sorted(m for m in sys.modules if m.startswith(('app.worker', 'app.api', 'app.core.db'))))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        env=no_server_env(rulesets),
        cwd=ROOT,
        capture_output=True,
        encoding="utf-8",
        timeout=120,
    )
    assert "exit 0" in result.stdout, result.stdout + result.stderr
    assert result.stdout.count("loaded []") == 2, result.stdout


def test_progress_goes_to_stderr_only_when_it_is_a_terminal(models, rulesets):
    files = [models["valid_part"], models["far_outlier"]]
    piped = librarian_validate("--format", "json", *files, rulesets_dir=rulesets)
    assert piped.returncode == 0 and piped.stderr == ""
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli.main", "validate", "--format", "json", *map(str, files)],
        env=no_server_env(rulesets),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=terminal,
    )
    os.close(terminal)
    try:
        shown = _read_all(controller)  # read while it runs, so a full terminal buffer never blocks it
    finally:
        os.close(controller)
    assert process.wait(timeout=180) == 0
    assert "validating" in shown and "2/2" in shown


def _read_all(fd: int) -> str:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the terminal's other end is closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", "replace")


def test_a_model_over_the_time_limit_is_rejected_with_the_reason_and_the_run_goes_on(models, rulesets) -> None:
    """--timeout as the workers' VALIDATION_TIMEOUT_S: the sandbox stops the file, the others still run."""
    done = librarian_validate(
        models["large_model"], models["valid_part"], "--format", "json", "--timeout", "0.01", rulesets_dir=rulesets
    )
    assert done.returncode == 1, done.stderr
    first, second = json.loads(done.stdout)
    assert first["status"] == "rejected"
    assert [f["code"] for f in first["report"]["findings"]] == ["RESOURCE_LIMIT"]
    assert first["report"]["findings"][0]["details"]["limit"] == "time"
    # the second file gets the same 10 ms: it may or may not make it, but it has its own verdict
    assert second["status"] in {"passed", "rejected"} and second["report"] is not None
