"""The ruleset registry on a real SQLite database: file sync, the default, PUT semantics, races."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlmodel import Session, create_engine, select

from app.core import rulesets
from app.core.db import init_db
from app.models import RulesetVersion
from app.validation.rules import DEFAULT_NAME_PATTERN
from app.validation.rulesets import RulesetError

TEAM = "description = \"Team SF\"\nname_pattern = 'SF-C[0-9]{2}-[A-Z]-[0-9]{3}'\n"


@pytest.fixture
def engine(tmp_path: Path):
    engine = create_engine(f"sqlite:///{tmp_path / 'registry.db'}", connect_args={"timeout": 10})
    init_db(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def session(engine):
    with Session(engine) as session:
        yield session


@pytest.fixture
def files(tmp_path: Path) -> Path:
    directory = tmp_path / "rulesets"
    directory.mkdir()
    (directory / "team-sf.toml").write_text(TEAM)
    return directory


def stored(session: Session) -> list[tuple[str, int, str]]:
    rows = session.exec(select(RulesetVersion).order_by(RulesetVersion.name, RulesetVersion.version)).all()
    return [(row.name, row.version, row.source) for row in rows]


def test_sync_stores_each_file_once_and_a_changed_file_as_the_next_version(session, files):
    added = rulesets.sync_files(session, directory=files, default="default")
    source = f"file:{files / 'team-sf.toml'}"
    assert [(row.name, row.version) for row in added] == [("team-sf", 1), ("default", 1)]
    assert rulesets.sync_files(session, directory=files, default="default") == []  # a restart, nothing changed

    (files / "team-sf.toml").write_text(TEAM + "unique_names = false\n")
    (changed,) = rulesets.sync_files(session, directory=files, default="default")
    assert (changed.name, changed.version, changed.source) == ("team-sf", 2, source)
    assert stored(session) == [("default", 1, "builtin"), ("team-sf", 1, source), ("team-sf", 2, source)]
    first = rulesets.get_version(session, name="team-sf", version=1)
    assert "unique_names" not in first.content  # old versions are kept as they were
    assert rulesets.to_ruleset(changed).rules.unique_names is False


def test_a_bad_file_raises_naming_the_file_and_the_field_and_nothing_is_stored(session, files):
    (files / "broken.toml").write_text("name_pattern = '(('\n")
    with pytest.raises(RulesetError) as caught:
        rulesets.sync_files(session, directory=files, default="default")
    assert caught.value.field == "name_pattern"
    assert str(files / "broken.toml") in str(caught.value)
    assert stored(session) == []


def test_without_a_file_the_default_ruleset_is_registered_from_the_built_in_defaults(session, tmp_path):
    (row,) = rulesets.sync_files(session, directory=tmp_path / "missing", default="default")
    assert (row.name, row.version, row.source, row.content) == ("default", 1, "builtin", {})
    assert rulesets.to_ruleset(row).rules.name_pattern == DEFAULT_NAME_PATTERN


def test_another_default_name_must_exist_or_start_up_fails(session, tmp_path):
    with pytest.raises(RulesetError, match="DEFAULT_RULESET='team-sf'") as caught:
        rulesets.sync_files(session, directory=tmp_path, default="team-sf")
    assert caught.value.field == "DEFAULT_RULESET"
    assert stored(session) == []

    rulesets.put(session, name="team-sf", content={"unique_names": False}, directory=tmp_path)
    assert rulesets.sync_files(session, directory=tmp_path, default="team-sf") == []  # stored over HTTP: fine


def test_put_makes_a_version_only_when_the_content_changes(session, tmp_path):
    first, created = rulesets.put(session, name="team-ny", content={"unique_names": False}, directory=tmp_path)
    assert (first.version, first.source, created) == (1, "api", True)
    same, created = rulesets.put(session, name="team-ny", content={"unique_names": False}, directory=tmp_path)
    assert (same.version, same.sha256, created) == (1, first.sha256, False)
    second, created = rulesets.put(session, name="team-ny", content={"unique_names": True}, directory=tmp_path)
    assert (second.version, created) == (2, False)
    assert second.sha256 != first.sha256
    assert [row.name for row in rulesets.list_latest(session)] == ["team-ny"]
    assert rulesets.list_latest(session)[0].version == 2


def test_a_name_defined_by_a_file_cannot_be_put_whatever_the_content(session, files):
    for content in ({}, {"unique_names": "not even valid"}):
        with pytest.raises(rulesets.FileOwnedRuleset, match="edit the file") as caught:
            rulesets.put(session, name="team-sf", content=content, directory=files)
        assert caught.value.path == files / "team-sf.toml"
    assert stored(session) == []


def test_bad_content_is_refused_before_anything_is_stored(session, tmp_path):
    with pytest.raises(RulesetError) as caught:
        rulesets.put(session, name="team-ny", content={"max_object_count": "many"}, directory=tmp_path)
    assert caught.value.field == "max_object_count"
    assert stored(session) == []


def test_concurrent_writers_get_consecutive_versions_and_lose_nothing(engine, tmp_path):
    contents = [{"max_object_count": n} for n in range(8)]
    barrier = threading.Barrier(len(contents))
    errors: list[BaseException] = []

    def write(content: dict) -> None:
        try:
            with Session(engine) as own:
                barrier.wait()
                rulesets.put(own, name="team-race", content=content, directory=tmp_path)
        except BaseException as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(content,)) for content in contents]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with Session(engine) as session:
        rows = session.exec(select(RulesetVersion).where(RulesetVersion.name == "team-race")).all()
    assert sorted(row.version for row in rows) == list(range(1, len(contents) + 1))
    assert sorted(row.content["max_object_count"] for row in rows) == list(range(len(contents)))


def test_a_task_gets_the_exact_version_and_old_messages_get_the_latest_default(session, files):
    rulesets.sync_files(session, directory=files, default="default")
    (files / "team-sf.toml").write_text(TEAM + "unique_names = false\n")
    rulesets.sync_files(session, directory=files, default="default")

    assert rulesets.for_task(session, name="team-sf", version=1).ref()["version"] == 1
    assert rulesets.for_task(session, name="team-sf", version=None).version == 2
    assert rulesets.for_task(session, name=None, version=None).name == "default"
    with pytest.raises(rulesets.UnknownRuleset, match="'team-sf' version 7"):
        rulesets.for_task(session, name="team-sf", version=7)
    with pytest.raises(rulesets.UnknownRuleset):
        rulesets.resolve(session, name="nobody")
