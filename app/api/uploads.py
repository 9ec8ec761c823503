"""Streaming multipart uploads: bytes go straight to the store, limits enforced while they arrive.

Starlette's UploadFile spools the whole body before the handler runs, so a 5 GB upload would be
written out before we could refuse it; python-multipart's push parser lets us count and stop. Each
file is an upload of the object store (app/storage/): its network work (S3 parts) runs in a thread,
never on the event loop, and a refused body leaves nothing in the store.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from email.utils import collapse_rfc2231_value

import structlog
from fastapi import HTTPException, Request
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool

from app.core.errors import DependencyUnavailable
from app.storage import ObjectStore, Upload

log = structlog.get_logger("librarian.api")

MAX_FIELD_BYTES = 64 * 1024
MAX_HEADER_BYTES = 16 * 1024
TEXT_FIELDS = ("owner", "ruleset")


@dataclass
class ReceivedFile:
    field_name: str
    filename: str
    id: uuid.UUID  # the part's or the batch item's id: its key was made from it
    upload: Upload
    size: int = 0
    sha256: str = ""

    @property
    def key(self) -> str:
        return self.upload.key


@dataclass
class _Part:
    headers: dict[str, str] = field(default_factory=dict)
    field_name: str = ""
    filename: str | None = None
    upload: Upload | None = None
    digest: object = None
    size: int = 0
    value: bytearray = field(default_factory=bytearray)


class UploadRejected(HTTPException):
    pass


def _header_text(raw: bytes) -> str:
    """Browsers and httpx send header values as raw UTF-8; a few old clients send Latin-1."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _disposition(value: str) -> tuple[str, str | None]:
    """The field name and file name of a part's Content-Disposition, exactly as the client sent
    them. An RFC 5987/2231 `filename*=UTF-8''…` wins over a plain `filename` (RFC 6266 §4.3); RFC
    7578 says senders should not use it, but some clients (curl scripts, older libraries) do, and
    python-multipart ignores it, hence this parser (the standard library's).
    """
    header = Message()
    header["content-disposition"] = value
    plain: dict[str, str] = {}
    extended: dict[str, str] = {}
    for key, param in header.get_params(header="content-disposition", failobj=[])[1:]:
        if isinstance(param, tuple):  # key*=charset'lang'percent-encoded (or key*0=… continuations)
            extended[key] = collapse_rfc2231_value(param)
        else:
            plain[key] = param
    name = extended.get("name", plain.get("name", ""))
    filename = extended.get("filename", plain.get("filename"))
    if filename is not None and (filename[1:3] == ":\\" or filename[:2] == "\\\\"):
        filename = filename.rsplit("\\", 1)[-1]  # old IE sends the full Windows path
    return name, filename


async def receive_files(
    request: Request,
    *,
    store: ObjectStore,
    key_for: Callable[[uuid.UUID, str], str],
    max_file_bytes: int,
    max_files: int,
    too_many_status: int = 413,
    file_field: str = "file",
    text_fields: tuple[str, ...] = TEXT_FIELDS,
) -> tuple[list[ReceivedFile], dict[str, str]]:
    """Parse a multipart body into uploads of `store` and small text fields.

    Each file gets a new id and the key `key_for(id, client's file name)`. Files come in the field
    `file_field`, text in `text_fields` only. Raises 413 (too big / too many parts), 415 (not
    multipart), 422 (malformed, or a field of another name: a misspelt field would otherwise look
    like "no file"), DependencyUnavailable (503) when the store fails. Uploads are discarded on any
    error; on success the caller owns them: commit, or `discard(files)`.

    With a bearer token (app/api/deps.py get_owner), `fields["owner"]` is the token's owner; an
    `owner` field or X-Librarian-User header naming someone else answers 403.
    """
    token_owner = getattr(request.state, "owner", None)
    _check_owner(token_owner, request.headers.get("x-librarian-user"))
    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise UploadRejected(415, detail="send the file as multipart/form-data")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_file_bytes * max_files + 1024 * 1024:
        raise UploadRejected(413, detail=f"request body of {declared} bytes is over the limit")

    files: list[ReceivedFile] = []
    fields: dict[str, str] = {}
    current = _Part()
    header_field = bytearray()
    header_value = bytearray()
    errors: list[UploadRejected] = []

    def fail(status: int, detail: str) -> None:
        if not errors:
            errors.append(UploadRejected(status, detail=detail))

    def on_part_begin() -> None:
        nonlocal current
        current = _Part()

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header_field.extend(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header_value.extend(data[start:end])
        if len(header_value) > MAX_HEADER_BYTES:
            fail(413, "a multipart header is too long")

    def on_header_end() -> None:
        current.headers[header_field.decode("latin-1").lower()] = _header_text(bytes(header_value))
        header_field.clear()
        header_value.clear()

    def on_headers_finished() -> None:
        current.field_name, current.filename = _disposition(current.headers.get("content-disposition", ""))
        if current.field_name != file_field and (current.filename is not None or current.field_name not in text_fields):
            what = "a file in the form field" if current.filename is not None else "unknown form field"
            fail(
                422,
                f"{what} {current.field_name[:100]!r}: send the file(s) in the multipart field {file_field!r}"
                + (f" (text fields: {', '.join(text_fields)})" if text_fields else ""),
            )
            return
        if current.filename is not None:
            if len(files) >= max_files:
                fail(too_many_status, f"too many files: at most {max_files} per request")
                return
            file_id = uuid.uuid4()
            current.upload = store.open_upload(key_for(file_id, current.filename))
            current.digest = hashlib.sha256()
            files.append(ReceivedFile(current.field_name, current.filename, file_id, current.upload))

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if errors:
            return
        chunk = data[start:end]
        current.size += len(chunk)
        if current.upload is not None:
            if current.size > max_file_bytes:
                fail(413, f"file {current.filename!r} is over the {max_file_bytes // (1024 * 1024)} MB limit")
                return
            current.upload.write(chunk)
            current.digest.update(chunk)  # type: ignore[attr-defined]
        elif current.size > MAX_FIELD_BYTES:
            fail(413, f"form field {current.field_name!r} is over {MAX_FIELD_BYTES} bytes")
        else:
            current.value.extend(chunk)

    def on_part_end() -> None:
        if current.upload is not None:
            current.upload.close()
            files[-1].size = current.size
            files[-1].sha256 = current.digest.hexdigest()  # type: ignore[attr-defined]
        elif current.field_name and not errors:
            if len(fields) >= 50:
                fail(413, "too many form fields")
            fields[current.field_name] = current.value.decode(errors="replace")

    parser = MultipartParser(
        boundary,
        callbacks={
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )
    try:
        async for chunk in request.stream():
            parser.write(chunk)
            if errors:
                raise errors[0]
            await _flush(files[-2:])  # the file this chunk ended and the one it began (the rest at the end)
        parser.finalize()
        if errors:
            raise errors[0]
        await _flush(files)
    except (UploadRejected, DependencyUnavailable):
        await run_in_threadpool(discard, files)
        raise
    except Exception as exc:  # the multipart library's parse errors
        await run_in_threadpool(discard, files)
        raise UploadRejected(422, detail=f"malformed multipart body: {type(exc).__name__}") from exc
    if token_owner is not None:
        try:
            _check_owner(token_owner, fields.get("owner"))
        except UploadRejected:
            await run_in_threadpool(discard, files)
            raise
        fields["owner"] = token_owner
    return files, fields


async def _flush(files: list[ReceivedFile]) -> None:
    """Send what the uploads hold ready (a full S3 part, a finished file) from a thread."""
    for received in files:
        if received.upload.pending():
            await run_in_threadpool(received.upload.flush)


def _check_owner(token_owner: str | None, claimed: str | None) -> None:
    claimed = (claimed or "").strip()[:100]
    if token_owner is not None and claimed and claimed != token_owner:
        raise UploadRejected(403, detail=f"this token acts for {token_owner!r}, not for {claimed!r}")


def submitter(request: Request, fields: dict[str, str]) -> str | None:
    """Whom an upload runs for: the `owner` field (the token's owner, set by receive_files), else
    the X-Librarian-User header, else nobody."""
    return (fields.get("owner") or request.headers.get("x-librarian-user") or "").strip()[:100] or None


def discard(files: list[ReceivedFile]) -> None:
    """Leave nothing of these files in the store (blocking: call it from a thread). Best effort:
    one the store refuses to remove is logged and the others still go (the caller's error stands)."""
    for received in files:
        try:
            received.upload.discard()
        except Exception as exc:  # noqa: BLE001 (a cleanup error must not hide the one being answered)
            log.warning("upload not discarded", key=received.key, error=type(exc).__name__)
