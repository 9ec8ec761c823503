"""Diagnostics for operators: prove error reporting works end to end (off in production)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from app.core.config import settings

router = APIRouter(prefix="/diagnostics", tags=["diagnostics"], include_in_schema=False)


class SentryDiagnosticError(RuntimeError):
    """Raised on purpose so an operator can see an API error arrive in Sentry."""


@router.post("/sentry-error")
def raise_for_sentry() -> None:
    if settings.ENVIRONMENT == "production":
        raise HTTPException(404, detail="not available in production")
    raise SentryDiagnosticError("diagnostic error raised through the API on purpose")
