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


def list_parts(session: Session, *, status: PartStatus | None, limit: int, offset: int) -> tuple[list[Part], int]:
    query = select(Part)
    count = select(func.count()).select_from(Part)
    if status is not None:
        query = query.where(Part.status == status)
        count = count.where(Part.status == status)
    rows = session.exec(query.order_by(col(Part.created_at).desc()).offset(offset).limit(limit)).all()
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
