"""Scripted ChatKit backend for end-to-end tests.

A real `chatkit.server.ChatKitServer` backed by an in-memory store. It never calls a model:
`respond` streams a fixed assistant reply, word by word, with a configurable delay so tests can
observe incremental delivery. Every request to the ChatKit path (and its subpaths) is recorded
and exposed at `GET /__test__/requests` so tests can assert on what a client really sent.

Run from the repository root:

    python -m tests.backend.server --host 127.0.0.1 --port 8765 --path /prefix/chatkit
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import hashlib
import json
import os
import random
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import uvicorn
from chatkit.server import ChatKitServer, StreamingResult
from chatkit.store import AttachmentStore, NotFoundError, Store
from chatkit.types import (
    AssistantMessageContent,
    AssistantMessageContentPartAdded,
    AssistantMessageContentPartDone,
    AssistantMessageContentPartTextDelta,
    AssistantMessageItem,
    Attachment,
    AttachmentCreateParams,
    AttachmentUploadDescriptor,
    FileAttachment,
    ImageAttachment,
    Page,
    ThreadItem,
    ThreadItemAddedEvent,
    ThreadItemDoneEvent,
    ThreadItemUpdatedEvent,
    ThreadMetadata,
    ThreadStreamEvent,
    UserMessageItem,
)
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

DEFAULT_CHUNKS: tuple[str, ...] = ("Hello", " from", " the", " test", " backend.")
DEFAULT_DELTA_COUNT = len(DEFAULT_CHUNKS)
DEFAULT_DELTA_DELAY = 0.2
DELAY_ENV = "CHATKIT_TEST_DELTA_DELAY"
COUNT_ENV = "CHATKIT_TEST_DELTA_COUNT"
MAX_DELTA_COUNT = 1000  # keeps a scripted reply bounded in length
MAX_DELTA_DELAY = 30.0  # keeps a scripted reply bounded in time
MAX_RECORDS = 1000  # oldest records are dropped beyond this
JSON_KEEP_LIMIT = 16 * 1024 * 1024  # subpath bodies above this are hashed but not JSON-parsed

# Bounds on the `_test/...` fault routes, so no request can make the backend loop or wait long.
MAX_SLOW_SECONDS = 60.0
MAX_SSE_EVENTS = 1000
MAX_SSE_DELAY = 30.0
MAX_SSE_EVENT_SIZE = 1024 * 1024
MAX_LARGE_MB = 64
LARGE_CHUNK = 256 * 1024
DISCONNECT_POLL = 0.05  # seconds between is_disconnected() checks

T = TypeVar("T")


# --------------------------------------------------------------------------- request context


@dataclass
class RequestContext:
    """Per-request context handed to the ChatKit server (carries the request headers)."""

    headers: dict[str, str]
    base_url: str
    chatkit_path: str


# --------------------------------------------------------------------------- in-memory store


def _paginate(
    records: Sequence[T], after: str | None, limit: int, order: str, key: Callable[[T], str]
) -> Page[T]:
    """Cursor-paginate `records` (already in ascending order); `after` is an id cursor."""
    ordered = list(records) if order == "asc" else list(reversed(records))
    start = 0
    if after is not None:
        ids = [key(record) for record in ordered]
        start = ids.index(after) + 1 if after in ids else len(ordered)
    page = ordered[start : start + max(limit, 0)]
    has_more = start + len(page) < len(ordered)
    return Page(data=page, has_more=has_more, after=key(page[-1]) if page else None)


class InMemoryStore(Store[RequestContext]):
    """Dict-backed `Store`: threads, per-thread item lists and attachments, all in memory.

    Objects are deep-copied on the way in and out so callers never alias stored state.
    """

    def __init__(self) -> None:
        self.threads: dict[str, ThreadMetadata] = {}
        self.items: dict[str, list[ThreadItem]] = {}
        self.attachments: dict[str, Attachment] = {}

    async def load_thread(self, thread_id: str, context: RequestContext) -> ThreadMetadata:
        """Return a copy of the thread's metadata or raise `NotFoundError`."""
        try:
            return self.threads[thread_id].model_copy(deep=True)
        except KeyError:
            raise NotFoundError(f"thread {thread_id} not found") from None

    async def save_thread(self, thread: ThreadMetadata, context: RequestContext) -> None:
        """Upsert thread metadata, stripping items if a full `Thread` is passed."""
        self.threads[thread.id] = ThreadMetadata(**thread.model_dump(exclude={"items"}))
        self.items.setdefault(thread.id, [])

    async def load_threads(
        self, limit: int, after: str | None, order: str, context: RequestContext
    ) -> Page[ThreadMetadata]:
        """Page through threads ordered by creation time."""
        threads = sorted(self.threads.values(), key=lambda thread: thread.created_at)
        page = _paginate(threads, after, limit, order, key=lambda thread: thread.id)
        page.data = [thread.model_copy(deep=True) for thread in page.data]
        return page

    async def delete_thread(self, thread_id: str, context: RequestContext) -> None:
        """Drop a thread and all of its items."""
        self.threads.pop(thread_id, None)
        self.items.pop(thread_id, None)

    async def load_thread_items(
        self,
        thread_id: str,
        after: str | None,
        limit: int,
        order: str,
        context: RequestContext,
    ) -> Page[ThreadItem]:
        """Page through a thread's items in insertion order."""
        page = _paginate(
            self.items.get(thread_id, []), after, limit, order, key=lambda item: item.id
        )
        page.data = [item.model_copy(deep=True) for item in page.data]
        return page

    async def add_thread_item(
        self, thread_id: str, item: ThreadItem, context: RequestContext
    ) -> None:
        """Append an item (replacing in place if the id already exists)."""
        await self.save_item(thread_id, item, context)

    async def save_item(self, thread_id: str, item: ThreadItem, context: RequestContext) -> None:
        """Upsert an item by id, keeping its original position."""
        items = self.items.setdefault(thread_id, [])
        stored = item.model_copy(deep=True)
        for index, existing in enumerate(items):
            if existing.id == item.id:
                items[index] = stored
                return
        items.append(stored)

    async def load_item(self, thread_id: str, item_id: str, context: RequestContext) -> ThreadItem:
        """Return a copy of one item or raise `NotFoundError`."""
        for item in self.items.get(thread_id, []):
            if item.id == item_id:
                return item.model_copy(deep=True)
        raise NotFoundError(f"item {item_id} not found in thread {thread_id}")

    async def delete_thread_item(
        self, thread_id: str, item_id: str, context: RequestContext
    ) -> None:
        """Remove one item if present."""
        items = self.items.get(thread_id, [])
        self.items[thread_id] = [item for item in items if item.id != item_id]

    async def save_attachment(self, attachment: Attachment, context: RequestContext) -> None:
        """Upsert attachment metadata."""
        self.attachments[attachment.id] = attachment.model_copy(deep=True)

    async def load_attachment(self, attachment_id: str, context: RequestContext) -> Attachment:
        """Return a copy of the attachment or raise `NotFoundError`."""
        try:
            return self.attachments[attachment_id].model_copy(deep=True)
        except KeyError:
            raise NotFoundError(f"attachment {attachment_id} not found") from None

    async def delete_attachment(self, attachment_id: str, context: RequestContext) -> None:
        """Forget attachment metadata."""
        self.attachments.pop(attachment_id, None)


class InMemoryAttachmentStore(AttachmentStore[RequestContext]):
    """Two-phase upload support: uploads go to `<chatkit_path>/upload/<attachment id>`.

    The upload itself is handled (and recorded) by the generic subpath endpoint.
    """

    def __init__(self) -> None:
        self.uploads: dict[str, dict[str, Any]] = {}

    async def create_attachment(
        self, input: AttachmentCreateParams, context: RequestContext
    ) -> Attachment:
        """Create an attachment whose upload descriptor points back at this server."""
        attachment_id = self.generate_attachment_id(input.mime_type, context)
        base = f"{context.base_url}{context.chatkit_path}"
        descriptor = AttachmentUploadDescriptor(url=f"{base}/upload/{attachment_id}", method="PUT")
        if input.mime_type.startswith("image/"):
            return ImageAttachment(
                id=attachment_id,
                name=input.name,
                mime_type=input.mime_type,
                upload_descriptor=descriptor,
                preview_url=f"{base}/preview/{attachment_id}",
            )
        return FileAttachment(
            id=attachment_id,
            name=input.name,
            mime_type=input.mime_type,
            upload_descriptor=descriptor,
        )

    async def delete_attachment(self, attachment_id: str, context: RequestContext) -> None:
        """Forget any uploaded bytes' summary for the attachment."""
        self.uploads.pop(attachment_id, None)


# --------------------------------------------------------------------------- chatkit server


def scripted_chunks(count: int) -> list[str]:
    """The scripted reply split into `count` deltas (extra deltas beyond the default 5)."""
    chunks = list(DEFAULT_CHUNKS[:count])
    chunks.extend(f" more{index}." for index in range(len(DEFAULT_CHUNKS), count))
    return chunks


class ScriptedChatKitServer(ChatKitServer[RequestContext]):
    """ChatKit server whose assistant streams a fixed reply instead of calling a model."""

    def __init__(
        self,
        store: InMemoryStore,
        attachment_store: InMemoryAttachmentStore,
        chunks: Sequence[str],
        delay: float,
    ) -> None:
        super().__init__(store, attachment_store)
        self.chunks = list(chunks)
        self.delay = delay

    async def respond(
        self,
        thread: ThreadMetadata,
        input_user_message: UserMessageItem | None,
        context: RequestContext,
    ) -> AsyncIterator[ThreadStreamEvent]:
        """Stream one assistant message: added, part added, N text deltas, part done, done."""
        item = AssistantMessageItem(
            id=self.store.generate_item_id("message", thread, context),
            thread_id=thread.id,
            created_at=datetime.now(),
            content=[],
        )
        yield ThreadItemAddedEvent(item=item)
        yield ThreadItemUpdatedEvent(
            item_id=item.id,
            update=AssistantMessageContentPartAdded(
                content_index=0, content=AssistantMessageContent(text="")
            ),
        )
        text = ""
        for index, chunk in enumerate(self.chunks):
            if index and self.delay > 0:
                await asyncio.sleep(self.delay)
            text += chunk
            yield ThreadItemUpdatedEvent(
                item_id=item.id,
                update=AssistantMessageContentPartTextDelta(content_index=0, delta=chunk),
            )
        final = AssistantMessageContent(text=text)
        yield ThreadItemUpdatedEvent(
            item_id=item.id,
            update=AssistantMessageContentPartDone(content_index=0, content=final),
        )
        yield ThreadItemDoneEvent(item=item.model_copy(update={"content": [final]}))


# --------------------------------------------------------------------------- request recording


class Recorder:
    """Bounded in-memory log of requests seen on the ChatKit path and its subpaths."""

    def __init__(self, limit: int = MAX_RECORDS) -> None:
        self.limit = limit
        self.records: list[dict[str, Any]] = []
        self._next_id = 1

    def add(self, record: dict[str, Any]) -> dict[str, Any]:
        """Store a record (assigning a sequential `id`) and return it for later mutation."""
        record["id"] = self._next_id
        self._next_id += 1
        self.records.append(record)
        del self.records[: max(len(self.records) - self.limit, 0)]
        return record

    def clear(self) -> None:
        """Forget all records."""
        self.records.clear()


def _headers_dict(request: Request) -> dict[str, str]:
    """All request headers with lowercased names; repeated headers are joined by ', '."""
    headers: dict[str, str] = {}
    for name, value in request.headers.items():
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


def _try_json(body: bytes) -> Any:
    """Parse a JSON body, or return None if it is empty or not JSON."""
    if not body:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None


def _input_metadata(parsed: Any) -> Any:
    """Return `params.input.metadata` of a user-message request, if the client sent one."""
    if not isinstance(parsed, dict):
        return None
    params = parsed.get("params")
    user_input = params.get("input") if isinstance(params, dict) else None
    return user_input.get("metadata") if isinstance(user_input, dict) else None


async def read_and_record(
    request: Request, recorder: Recorder, *, chatkit: bool
) -> tuple[dict[str, Any], bytes]:
    """Read the body as raw byte chunks (hashing as it goes) and record the request.

    The body is kept in memory only for ChatKit calls or JSON-typed subpath requests; uploads
    are hashed and counted but never kept or decoded.
    """
    arrived_at = time.time()
    headers = _headers_dict(request)
    content_type = headers.get("content-type")
    keep = chatkit or "json" in (content_type or "").lower()
    digest = hashlib.sha256()
    size = 0
    kept: list[bytes] = []
    async for chunk in request.stream():
        digest.update(chunk)
        size += len(chunk)
        if keep:
            kept.append(chunk)
            if not chatkit and size > JSON_KEEP_LIMIT:
                kept.clear()
                keep = False
    body = b"".join(kept)
    parsed = _try_json(body) if keep else None
    record: dict[str, Any] = {
        "arrived_at": arrived_at,
        "method": request.method,
        "path": request.url.path,
        "raw_path": request.scope.get("raw_path", b"").decode("latin-1"),
        "query": request.url.query,
        "headers": headers,
        "content_type": content_type,
        "json": parsed,
        "size": size,
        "sha256": digest.hexdigest(),
        "op": parsed.get("type") if chatkit and isinstance(parsed, dict) else None,
        "metadata": parsed.get("metadata") if chatkit and isinstance(parsed, dict) else None,
        "input_metadata": _input_metadata(parsed) if chatkit else None,
        "status": None,
        "streamed": False,
        "event_timestamps": [],
        "events": [],
        "completed_at": None,
    }
    return recorder.add(record), body


def _describe_sse_chunk(chunk: bytes, sent_at: float) -> dict[str, Any]:
    """Summarise a `data: {...}` SSE chunk: event type, item-update type, size, send time."""
    payload = _try_json(chunk[len(b"data: ") :].strip()) if chunk.startswith(b"data: ") else None
    payload = payload if isinstance(payload, dict) else {}
    update = payload.get("update")
    return {
        "t": sent_at,
        "type": payload.get("type"),
        "update_type": update.get("type") if isinstance(update, dict) else None,
        "size": len(chunk),
    }


class RecordingStreamingResponse(StreamingResponse):
    """SSE response that timestamps each body chunk as it is handed to the ASGI transport."""

    def __init__(
        self, content: AsyncIterator[bytes], record: dict[str, Any], **kwargs: Any
    ) -> None:
        super().__init__(content, **kwargs)
        self.record = record
        record["streamed"] = True
        record["status"] = self.status_code

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Wrap `send` so every non-empty body message gets a wall-clock timestamp."""

        async def timed_send(message: Message) -> None:
            if message["type"] == "http.response.body":
                chunk = message.get("body", b"")
                if chunk:
                    sent_at = time.time()
                    self.record["event_timestamps"].append(sent_at)
                    self.record["events"].append(_describe_sse_chunk(bytes(chunk), sent_at))
                if not message.get("more_body", False):
                    self.record["completed_at"] = time.time()
            await send(message)

        try:
            await super().__call__(scope, receive, timed_send)
        finally:
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                await aclose()


async def _prepend(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Yield an already-fetched first chunk, then the remainder of the stream."""
    try:
        yield first
        async for chunk in rest:
            yield chunk
    finally:
        aclose = getattr(rest, "aclose", None)
        if aclose is not None:
            await aclose()


def _error(record: dict[str, Any], status: int, message: str) -> JSONResponse:
    """JSON error response, noting the status on the record."""
    record["status"] = status
    return JSONResponse({"error": message}, status_code=status)


# --------------------------------------------------------------------------- fault routes
#
# Below `<chatkit_path>/_test/`, so a proxy in front forwards them like any ChatKit subpath.
# Every one is recorded like other subpath requests; what a route observed afterwards (a
# client that went away, an abort) is added to its record.


def _query_number(request: Request, name: str, default: float, low: float, high: float) -> float:
    """A numeric query parameter clamped into [low, high]; unparsable values give `default`."""
    try:
        value = float(request.query_params.get(name, default))
    except ValueError:
        value = default
    if value != value:  # NaN
        value = default
    return min(max(value, low), high)


def _sse_event(index: int, size: int) -> bytes:
    """One `data: {...}` SSE event of about `size` bytes, numbered `index`."""
    head = {"type": "test.event", "index": index, "pad": ""}
    overhead = len(b"data: \n\n") + len(json.dumps(head, separators=(",", ":")))
    head["pad"] = "x" * max(size - overhead, 0)
    return b"data: " + json.dumps(head, separators=(",", ":")).encode() + b"\n\n"


def _large_chunks(mb: int) -> Iterator[bytes]:
    """The deterministic pseudo-random body of `_test/large?mb=N`, as a generator of chunks."""
    rng = random.Random(f"chatkit-test-large-{mb}")
    remaining = mb * 1024 * 1024
    while remaining > 0:
        size = min(LARGE_CHUNK, remaining)
        remaining -= size
        yield rng.randbytes(size)


def fault_routes(chatkit_path: str, recorder: Recorder) -> list[Route]:
    """The `_test/...` routes (status, cookies, hop, gzip, slow, sse, die, large)."""
    base = chatkit_path.rstrip("/") + "/_test"
    large_digests: dict[int, str] = {}

    async def status(request: Request) -> Response:
        """Answer `{code}` with `?body=` as the body and `?content_type=` as its type."""
        record, _ = await read_and_record(request, recorder, chatkit=False)
        code = request.path_params["code"]
        if not 200 <= code <= 599:
            return _error(record, 400, f"status {code} is not between 200 and 599")
        record["status"] = code
        if code in (204, 304):
            return Response(status_code=code)
        content_type = request.query_params.get("content_type", "text/plain; charset=utf-8")
        body = request.query_params.get("body", "").encode()
        return Response(body, status_code=code, headers={"Content-Type": content_type})

    async def cookies(request: Request) -> Response:
        """A 200 carrying two separate Set-Cookie headers."""
        record, _ = await read_and_record(request, recorder, chatkit=False)
        record["status"] = 200
        response = JSONResponse({"cookies": ["first", "second"]})
        response.set_cookie("first", "one", path="/", httponly=True)
        response.set_cookie("second", "two", path="/", max_age=60)
        return response

    async def hop(request: Request) -> Response:
        """A 200 with hop-by-hop headers (one named by Connection) and an end-to-end one."""
        record, _ = await read_and_record(request, recorder, chatkit=False)
        record["status"] = 200
        headers = {
            "Connection": "X-Hop-Secret",
            "X-Hop-Secret": "1",
            "Keep-Alive": "timeout=5",
            "X-End-To-End": "yes",
        }
        return JSONResponse({"hop": True}, headers=headers)

    async def gzipped(request: Request) -> Response:
        """A JSON body compressed here, sent with Content-Encoding: gzip."""
        record, _ = await read_and_record(request, recorder, chatkit=False)
        record["status"] = 200
        payload = {"compressed": True, "items": [f"item-{index}" for index in range(200)]}
        raw = json.dumps(payload).encode()
        body = gzip.compress(raw, mtime=0)
        record["gzip"] = {"raw_sha256": hashlib.sha256(raw).hexdigest(), "size": len(body)}
        return Response(
            body,
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        )

    async def slow(request: Request) -> Response:
        """Wait `?seconds=N` before any header, noting when (if) the client goes away."""
        record, _ = await read_and_record(request, recorder, chatkit=False)
        seconds = _query_number(request, "seconds", 5.0, 0.0, MAX_SLOW_SECONDS)
        record["disconnected_at"] = None
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if await request.is_disconnected():
                record["disconnected_at"] = time.time()
                record["status"] = None
                return Response(status_code=503)  # never sent: the client is gone
            await asyncio.sleep(min(DISCONNECT_POLL, max(deadline - time.monotonic(), 0)))
        record["status"] = 200
        return JSONResponse({"slept": seconds})

    async def sse(request: Request) -> Response:
        """`?events=N` SSE events of about `?size=B` bytes, `?delay=S` seconds apart."""
        record, _ = await read_and_record(request, recorder, chatkit=False)
        count = int(_query_number(request, "events", 5, 0, MAX_SSE_EVENTS))
        delay = _query_number(request, "delay", 0.1, 0.0, MAX_SSE_DELAY)
        size = int(_query_number(request, "size", 64, 0, MAX_SSE_EVENT_SIZE))
        record["disconnected_at"] = None

        async def events() -> AsyncIterator[bytes]:
            finished = False
            try:
                for index in range(count):
                    if index and delay > 0:
                        deadline = time.monotonic() + delay
                        while time.monotonic() < deadline:
                            if await request.is_disconnected():
                                return
                            await asyncio.sleep(
                                min(DISCONNECT_POLL, max(deadline - time.monotonic(), 0))
                            )
                    if await request.is_disconnected():
                        return
                    yield _sse_event(index, size)
                finished = True
            finally:
                # Cancelled by Starlette's disconnect listener, closed early, or returned above.
                if not finished and record["disconnected_at"] is None:
                    record["disconnected_at"] = time.time()

        return RecordingStreamingResponse(
            events(),
            record,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def die(request: Request) -> Response:
        """`?after=N` SSE events, then an exception that makes uvicorn abort the body."""
        record, _ = await read_and_record(request, recorder, chatkit=False)
        after = int(_query_number(request, "after", 3, 0, MAX_SSE_EVENTS))
        record["aborted_at"] = None

        async def events() -> AsyncIterator[bytes]:
            for index in range(after):
                yield _sse_event(index, 64)
                await asyncio.sleep(0.05)
            record["aborted_at"] = time.time()
            raise RuntimeError("test backend: connection broken on purpose (_test/die)")

        return RecordingStreamingResponse(
            events(),
            record,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def large(request: Request) -> Response:
        """`?mb=N` MB of deterministic pseudo-random bytes, streamed, with `X-Sha256`."""
        record, _ = await read_and_record(request, recorder, chatkit=False)
        mb = int(_query_number(request, "mb", 1, 0, MAX_LARGE_MB))
        if mb not in large_digests:
            digest = hashlib.sha256()
            for chunk in _large_chunks(mb):
                digest.update(chunk)
            large_digests[mb] = digest.hexdigest()

        async def body() -> AsyncIterator[bytes]:
            for chunk in _large_chunks(mb):
                yield chunk

        record["large"] = {"size": mb * 1024 * 1024, "sha256": large_digests[mb]}
        return RecordingStreamingResponse(
            body(),
            record,
            media_type="application/octet-stream",
            headers={"X-Sha256": large_digests[mb]},
        )

    any_method = ["GET", "POST", "PUT"]
    return [
        Route(base + "/status/{code:int}", status, methods=any_method),
        Route(base + "/cookies", cookies, methods=any_method),
        Route(base + "/hop", hop, methods=any_method),
        Route(base + "/gzip", gzipped, methods=any_method),
        Route(base + "/slow", slow, methods=any_method),
        Route(base + "/sse", sse, methods=any_method),
        # The same below it, so that a proxy whose backend URL ends at this route reaches it
        # from its own static route (the benchmark's way to time ChatKit's endpoint).
        Route(base + "/sse/{rest:path}", sse, methods=any_method),
        Route(base + "/die", die, methods=any_method),
        Route(base + "/large", large, methods=any_method),
    ]


# --------------------------------------------------------------------------- app factory


def _env_float(name: str, default: float) -> float:
    """Read a number from the environment, falling back to `default` when unset or empty."""
    raw = os.environ.get(name, "").strip()
    return float(raw) if raw else default


def create_app(
    chatkit_path: str = "/chatkit",
    *,
    delta_count: int | None = None,
    delta_delay: float | None = None,
) -> Starlette:
    """Build the test backend ASGI app serving ChatKit at `chatkit_path`.

    `delta_count` / `delta_delay` default to `CHATKIT_TEST_DELTA_COUNT` /
    `CHATKIT_TEST_DELTA_DELAY` from the environment, then to 5 deltas and 0.2 s.
    """
    chatkit_path = "/" + chatkit_path.strip("/")
    if delta_count is None:
        delta_count = int(_env_float(COUNT_ENV, DEFAULT_DELTA_COUNT))
    if delta_delay is None:
        delta_delay = _env_float(DELAY_ENV, DEFAULT_DELTA_DELAY)
    delta_count = min(max(delta_count, 1), MAX_DELTA_COUNT)
    delta_delay = min(max(delta_delay, 0.0), MAX_DELTA_DELAY)
    store = InMemoryStore()
    attachment_store = InMemoryAttachmentStore()
    server = ScriptedChatKitServer(
        store, attachment_store, scripted_chunks(delta_count), delta_delay
    )
    recorder = Recorder()

    def make_context(request: Request, record: dict[str, Any]) -> RequestContext:
        return RequestContext(
            headers=record["headers"],
            base_url=str(request.base_url).rstrip("/"),
            chatkit_path=chatkit_path,
        )

    async def chatkit_endpoint(request: Request) -> Response:
        """Feed the raw body to `server.process`; stream SSE or return JSON."""
        record, body = await read_and_record(request, recorder, chatkit=True)
        if request.method != "POST":
            return _error(record, 405, f"{request.method} not allowed; POST ChatKit requests here")
        context = make_context(request, record)
        try:
            result = await server.process(body, context)
        except ValidationError as exc:
            return _error(
                record,
                400,
                f"invalid ChatKit request ({exc.error_count()} error(s)); send a JSON body "
                'like {"type": "threads.list", "params": {}}',
            )
        except NotFoundError as exc:
            return _error(record, 404, str(exc))
        except NotImplementedError as exc:
            return _error(record, 501, str(exc))
        if not isinstance(result, StreamingResult):
            record["status"] = 200
            return Response(result.json, media_type="application/json")
        # Pull the first event eagerly so lookup errors become HTTP errors, not broken streams.
        stream = aiter(result)
        try:
            first = await anext(stream)
        except StopAsyncIteration:
            first = b""
        except NotFoundError as exc:
            return _error(record, 404, str(exc))
        return RecordingStreamingResponse(
            _prepend(first, stream),
            record,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def subpath_endpoint(request: Request) -> Response:
        """Record and echo a summary of any request below the ChatKit path (e.g. uploads)."""
        record, _ = await read_and_record(request, recorder, chatkit=False)
        rest = request.path_params.get("rest", "")
        kind, _, attachment_id = rest.partition("/")
        if kind == "upload" and request.method in ("PUT", "POST") and attachment_id:
            attachment_store.uploads[attachment_id] = {
                "size": record["size"],
                "sha256": record["sha256"],
            }
            if attachment_id in store.attachments:
                store.attachments[attachment_id].upload_descriptor = None
        record["status"] = 200
        summary_keys = ("method", "path", "query", "size", "sha256", "content_type")
        return JSONResponse({key: record[key] for key in summary_keys})

    async def list_requests(request: Request) -> Response:
        """Return every recorded request (oldest first)."""
        return JSONResponse(recorder.records)

    async def reset_requests(request: Request) -> Response:
        """Clear the request log."""
        recorder.clear()
        return JSONResponse({"ok": True})

    async def healthz(request: Request) -> Response:
        """Readiness probe."""
        return PlainTextResponse("ok")

    async def unrouted(request: Request, exc: Exception) -> Response:
        """Record a request no route took (404/405), so a proxy's stray requests show up."""
        assert isinstance(exc, HTTPException)
        record, _ = await read_and_record(request, recorder, chatkit=False)
        record["status"] = exc.status_code
        record["unrouted"] = True
        return PlainTextResponse(exc.detail, status_code=exc.status_code, headers=exc.headers)

    chatkit_methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/__test__/requests", list_requests, methods=["GET"]),
        Route("/__test__/reset", reset_requests, methods=["POST"]),
        Route(chatkit_path, chatkit_endpoint, methods=chatkit_methods),
        *fault_routes(chatkit_path, recorder),
        Route(
            chatkit_path.rstrip("/") + "/{rest:path}",
            subpath_endpoint,
            methods=["GET", "POST", "PUT"],
        ),
    ]
    app = Starlette(routes=routes, exception_handlers={404: unrouted, 405: unrouted})
    app.state.chatkit_server = server
    app.state.store = store
    app.state.recorder = recorder
    return app


def main(argv: Sequence[str] | None = None) -> None:
    """CLI entry point: serve the test backend with uvicorn."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--path", default="/chatkit", help="ChatKit endpoint path")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    app = create_app(args.path)
    print(f"ChatKit test backend: http://{args.host}:{args.port}{args.path}", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)


if __name__ == "__main__":
    main()
