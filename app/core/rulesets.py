"""The ruleset registry: every version of every named ruleset, in the database.

A name is owned either by a file in RULESETS_DIR (synced at start-up: a changed file becomes the
next version) or by the API (PUT /api/v1/rulesets/{name}: a changed content becomes the next
version). Versions are never changed nor deleted, so the `ruleset: {name, version, sha256}` of
any report can still be looked up. Parts and batches fix (name, version) when they are submitted;
the worker runs exactly that version.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, and_, col, func, select

from app.core.config import settings
from app.models import RulesetVersion
from app.validation.rulesets import Ruleset, RulesetError, build_ruleset, check_name, load_dir

log = structlog.get_logger("librarian.rulesets")

BUILTIN_DEFAULT = "default"  # the one name registered from the built-in defaults when no file defines it
_INSERT_ATTEMPTS = 10  # each lost race means another writer stored its version: 10 writers always succeed


class FileOwnedRuleset(Exception):
    """A name defined by a file in RULESETS_DIR: read-only over HTTP."""

    def __init__(self, name: str, path: Path) -> None:
        super().__init__(f"ruleset {name!r} is defined by {path}: edit the file")
        self.name = name
        self.path = path


class UnknownRuleset(LookupError):
    def __init__(self, name: str, version: int | None = None) -> None:
        what = f"{name!r} version {version}" if version is not None else repr(name)
        super().__init__(f"unknown ruleset {what}")
        self.name = name
        self.version = version


def latest(session: Session, *, name: str) -> RulesetVersion | None:
    query = select(RulesetVersion).where(RulesetVersion.name == name)
    return session.exec(query.order_by(col(RulesetVersion.version).desc()).limit(1)).first()


def get_version(session: Session, *, name: str, version: int) -> RulesetVersion | None:
    return session.get(RulesetVersion, (name, version))


def list_latest(session: Session) -> list[RulesetVersion]:
    """The latest version of every name, by name."""
    newest = (
        select(RulesetVersion.name, func.max(RulesetVersion.version).label("version"))
        .group_by(RulesetVersion.name)
        .subquery()
    )
    query = select(RulesetVersion).join(
        newest, and_(RulesetVersion.name == newest.c.name, RulesetVersion.version == newest.c.version)
    )
    return list(session.exec(query.order_by(RulesetVersion.name)).all())


def to_ruleset(row: RulesetVersion) -> Ruleset:
    """The validation Ruleset of a stored version (its report names `row.version`)."""
    return build_ruleset(row.name, row.content, version=row.version)


def file_for(name: str, *, directory: Path | None = None) -> Path | None:
    """The file that defines `name`, if there is one."""
    path = Path(directory if directory is not None else settings.RULESETS_DIR) / f"{name}.toml"
    return path if path.is_file() else None


def put(
    session: Session, *, name: str, content: Mapping[str, Any], directory: Path | None = None
) -> tuple[RulesetVersion, bool]:
    """Store `content` under `name` (HTTP): a new version when it differs from the latest, else the
    latest. Returns (version, created) where created means the name was new. Raises RulesetError
    (with `.field`) for bad content or name, FileOwnedRuleset for a name a file defines."""
    path = file_for(check_name(name), directory=directory)
    if path is not None:
        raise FileOwnedRuleset(name, path)
    ruleset = build_ruleset(name, content)
    created = latest(session, name=name) is None
    row, _ = _store(session, ruleset, source="api")
    return row, created


def sync_files(session: Session, *, directory: Path | None = None, default: str | None = None) -> list[RulesetVersion]:
    """Store every ruleset file of `directory` whose content differs from its name's latest version,
    and make sure the default ruleset exists. Returns the versions added.

    Every file is read and checked before anything is stored: a bad one raises RulesetError naming
    the file and the field. A DEFAULT_RULESET that no file defines and that is not stored is
    registered from the built-in defaults when it is "default", else a RulesetError.
    """
    directory = Path(directory if directory is not None else settings.RULESETS_DIR)
    default = default or settings.DEFAULT_RULESET
    if not directory.is_dir():
        log.warning("rulesets directory not found", directory=str(directory))
    files = load_dir(directory)
    added = []
    for name, ruleset in files.items():
        row, new = _store(session, ruleset, source=f"file:{directory / f'{name}.toml'}")
        if new:
            added.append(row)
    if default not in files and latest(session, name=default) is None:
        if default != BUILTIN_DEFAULT:
            raise RulesetError(
                f"DEFAULT_RULESET={default!r} is neither a file in {directory} nor a stored ruleset: "
                f"add {directory / f'{default}.toml'} or choose another DEFAULT_RULESET",
                field="DEFAULT_RULESET",
            )
        row, _ = _store(session, build_ruleset(default, {}), source="builtin")
        added.append(row)
    log.info(
        "rulesets synced",
        directory=str(directory),
        files=sorted(files),
        default=default,
        added=[f"{row.name}@{row.version}" for row in added],
    )
    return added


def resolve(session: Session, *, name: str | None) -> RulesetVersion:
    """The version a new submission gets: the latest of `name` (default: DEFAULT_RULESET)."""
    name = name or settings.DEFAULT_RULESET
    row = latest(session, name=name)
    if row is None:
        raise UnknownRuleset(name)
    return row


def for_task(session: Session, *, name: str | None, version: int | None) -> Ruleset:
    """What a worker runs: exactly (name, version); the latest of `name` when no version is given,
    and the latest DEFAULT_RULESET for messages sent before rulesets existed (neither given)."""
    if name is None or version is None:
        return to_ruleset(resolve(session, name=name))
    row = get_version(session, name=name, version=version)
    if row is None:
        raise UnknownRuleset(name, version)
    return to_ruleset(row)


def _store(session: Session, ruleset: Ruleset, *, source: str) -> tuple[RulesetVersion, bool]:
    """Insert `ruleset` as its name's next version unless the latest has the same sha256.

    Two processes may store the same name at once (API and worker start-up, concurrent PUTs): the
    loser of the primary-key race reads again and retries.
    """
    for _ in range(_INSERT_ATTEMPTS):
        current = latest(session, name=ruleset.name)
        if current is not None and current.sha256 == ruleset.sha256:
            return current, False
        row = RulesetVersion(
            name=ruleset.name,
            version=current.version + 1 if current else 1,
            sha256=ruleset.sha256,
            content=ruleset.content,
            source=source,
        )
        session.add(row)
        try:
            session.commit()
        except IntegrityError:
            session.rollback()
            continue
        session.refresh(row)
        log.info("ruleset version stored", name=row.name, version=row.version, sha256=row.sha256, source=source)
        return row, True
    raise RuntimeError(f"could not store ruleset {ruleset.name!r}: {_INSERT_ATTEMPTS} concurrent writers won")
