"""Keyword-only database operations on parts, shared by the API and the tasks."""

from __future__ import annotations

import uuid
from typing import Any

from sqlmodel import Session, col, func, select

from app.models import Part, PartStatus, utcnow


def create_part(
    session: Session,
    *,
    filename: str,
    storage_key: str,
    size_bytes: int,
    sha256: str,
    owner: str | None = None,
    part_id: uuid.UUID | None = None,
) -> Part:
    part = Part(
        id=part_id or uuid.uuid4(),
        filename=filename[:255],
        storage_key=storage_key,
        size_bytes=size_bytes,
        sha256=sha256,
        owner=owner,
    )
    session.add(part)
    session.commit()
    session.refresh(part)
    return part


def get_part(session: Session, *, part_id: uuid.UUID) -> Part | None:
    return session.get(Part, part_id)


def list_parts(
    session: Session,
    *,
    status: PartStatus | None,
    limit: int,
    offset: int,
    owner: str | None = None,
    ruleset: str | None = None,
    filename: str | None = None,
) -> tuple[list[Part], int]:
    """Newest first, and the total matching. `filename` matches a part of the name, any case."""
    conditions: list[Any] = []
    if status is not None:
        conditions.append(Part.status == status)
    if owner:
        conditions.append(Part.owner == owner)
    if ruleset:
        conditions.append(Part.ruleset_name == ruleset)
    if filename:
        escaped = filename.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        conditions.append(func.lower(Part.filename).like(f"%{escaped.lower()}%", escape="\\"))
    query = select(Part).where(*conditions)
    count = select(func.count()).select_from(Part).where(*conditions)
    # The id breaks ties: pages stay stable on PostgreSQL, which has no implicit row order.
    rows = session.exec(query.order_by(col(Part.created_at).desc(), col(Part.id)).offset(offset).limit(limit)).all()
    return list(rows), session.exec(count).one()


def update_part(session: Session, *, part: Part, **changes: Any) -> Part:
    for key, value in changes.items():
        setattr(part, key, value)
    part.updated_at = utcnow()
    session.add(part)
    session.commit()
    session.refresh(part)
    return part


def delete_part(session: Session, *, part: Part) -> None:
    session.delete(part)
    session.commit()
