"""Keyword-only database operations, shared by the API and the tasks: `from app import crud`."""

from app.crud.batches import (
    count_items_by_status,
    create_batch,
    get_batch,
    get_batch_item,
    list_failed_items,
    list_items_to_send,
    mark_items_queued,
    update_batch_item,
)
from app.crud.diagnostics import record_write
from app.crud.parts import create_part, delete_part, get_part, list_parts, update_part

__all__ = [
    "count_items_by_status",
    "create_batch",
    "create_part",
    "delete_part",
    "get_batch",
    "get_batch_item",
    "get_part",
    "list_failed_items",
    "list_items_to_send",
    "list_parts",
    "mark_items_queued",
    "record_write",
    "update_batch_item",
    "update_part",
]
