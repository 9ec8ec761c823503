"""Rulesets: the named rule sets teams own. Files in RULESETS_DIR are read-only here."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Path, Response, status

from app.api.deps import SessionDep
from app.api.schemas import ErrorBody, FieldErrorBody, RulesetList, RulesetPublic, RulesetSummary
from app.core import rulesets
from app.core.config import settings
from app.models import RulesetVersion

router = APIRouter(prefix="/rulesets", tags=["rulesets"])

NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody, "description": "No such ruleset or version"}}
EXAMPLE = {
    "description": "Team SF: SF-C12-D-001",
    "name_pattern": "SF-C[0-9]{2}-[A-Z]-[0-9]{3}",
    "name_expected": "SF-Cnn-X-nnn, e.g. SF-C12-D-001",
}


def summary(row: RulesetVersion) -> RulesetSummary:
    return RulesetSummary(
        name=row.name,
        version=row.version,
        sha256=row.sha256,
        description=row.content.get("description"),
        source=row.source,
        created_at=row.created_at,
    )


def public(row: RulesetVersion) -> RulesetPublic:
    return RulesetPublic(
        **summary(row).model_dump(), rules=rulesets.to_ruleset(row).rules.as_dict(), content=row.content
    )


@router.get("", response_model=RulesetList)
def list_rulesets(session: SessionDep) -> RulesetList:
    return RulesetList(items=[summary(row) for row in rulesets.list_latest(session)], default=settings.DEFAULT_RULESET)


@router.get("/{name}", response_model=RulesetPublic, responses=NOT_FOUND)
def get_ruleset(name: str, session: SessionDep) -> RulesetPublic:
    row = rulesets.latest(session, name=name)
    if row is None:
        raise HTTPException(404, detail=f"unknown ruleset {name!r}")
    return public(row)


@router.get("/{name}/versions/{version}", response_model=RulesetPublic, responses=NOT_FOUND)
def get_ruleset_version(
    name: str, version: Annotated[int, Path(ge=1, le=2**31 - 1)], session: SessionDep
) -> RulesetPublic:
    row = rulesets.get_version(session, name=name, version=version)
    if row is None:
        raise HTTPException(404, detail=f"unknown ruleset {name!r} version {version}")
    return public(row)


@router.put(
    "/{name}",
    response_model=RulesetPublic,
    responses={
        201: {"model": RulesetPublic, "description": "A new name: its version 1"},
        409: {"model": ErrorBody, "description": "The name is defined by a file in RULESETS_DIR"},
        422: {"model": FieldErrorBody, "description": "A bad name, an unknown rule, a wrong type, a bad pattern"},
    },
)
def put_ruleset(
    name: str,
    response: Response,
    session: SessionDep,
    content: Annotated[Any, Body(description="Rule fields (and an optional description)", examples=[EXAMPLE])],
) -> RulesetPublic:
    """Create or change a ruleset: a new version when the content differs from the latest one, the
    latest one unchanged otherwise (200). Fields left out keep their defaults."""
    row, created = rulesets.put(session, name=name, content=content)
    if created:
        response.status_code = status.HTTP_201_CREATED
    return public(row)
