"""Agent control: pause/resume a user's tasks (the emergency brake) and stream their status events.

With API_TOKENS set, a token acts on its own owner's agent only (403 otherwise)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Request
from pydantic import BaseModel
from sse_starlette.sse import EventSourceResponse

from app.api.deps import OwnerDep, RedisDep
from app.api.schemas import ErrorBody
from app.core import agents
from app.core.redis import get_async_redis

UserId = Annotated[str, Path(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.@-]+$")]


async def own_agent(user_id: UserId, owner: OwnerDep) -> None:
    if owner is not None and owner != user_id:
        raise HTTPException(403, detail=f"this token acts for {owner!r}, not for {user_id!r}")


router = APIRouter(
    prefix="/agents",
    tags=["agents"],
    dependencies=[Depends(own_agent)],
    responses={403: {"model": ErrorBody, "description": "The token's owner is another user"}},
)


class AgentState(BaseModel):
    user_id: str
    paused: bool
    held_tasks: int
    released_tasks: int | None = None


@router.post("/{user_id}/pause", response_model=AgentState)
def pause_agent(user_id: UserId, client: RedisDep) -> AgentState:
    """Stop starting this user's tasks (running ones finish); queued ones are held, not dropped."""
    agents.pause(client, user_id)
    return AgentState(user_id=user_id, paused=True, held_tasks=agents.held_count(client, user_id))


@router.post("/{user_id}/resume", response_model=AgentState)
def resume_agent(user_id: UserId, client: RedisDep) -> AgentState:
    """Start this user's tasks again; held ones go back to their queues first."""
    released = agents.resume(client, user_id)
    return AgentState(user_id=user_id, paused=False, held_tasks=0, released_tasks=released)


@router.get("/{user_id}", response_model=AgentState)
def agent_state(user_id: UserId, client: RedisDep) -> AgentState:
    return AgentState(
        user_id=user_id, paused=agents.is_paused(client, user_id), held_tasks=agents.held_count(client, user_id)
    )


@router.get("/{user_id}/events", response_class=EventSourceResponse)
async def agent_events(user_id: UserId, request: Request) -> EventSourceResponse:
    """Server-Sent Events: every status message published on agent:status:{user_id}, in order."""
    client = get_async_redis()
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(agents.STATUS_CHANNEL.format(user_id=user_id))

    async def stream() -> AsyncIterator[dict]:
        try:
            yield {"event": "subscribed", "data": json.dumps({"user_id": user_id})}
            while not await request.is_disconnected():
                message = await pubsub.get_message(timeout=1.0)
                if message is None:
                    await asyncio.sleep(0)
                    continue
                yield {"event": "status", "data": message["data"]}
        finally:
            await pubsub.aclose()

    return EventSourceResponse(stream(), ping=15)
