"""Self-check for the scripted ChatKit test backend.

Runs `python -m tests.backend.server` as a real subprocess on a free 127.0.0.1 port and talks
to it over HTTP, so the e2e suite can trust the backend's streaming and request recording.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.harness import free_port, user_message

REPO_ROOT = Path(__file__).resolve().parents[2]
CHATKIT_PATH = "/prefix/chatkit"
DELTA_DELAY = 0.1
DELTA_COUNT = 5
EXPECTED_TEXT = "Hello from the test backend."
STARTUP_TIMEOUT = 10.0
TEXT_DELTA = "assistant_message.content_part.text_delta"


@dataclass
class Stream:
    """A streamed ChatKit response: parsed SSE events plus client-side arrival times."""

    events: list[dict[str, Any]]
    received_at: list[float]
    content_type: str

    def deltas(self) -> list[tuple[float, str]]:
        """(arrival time, text) of each assistant text delta."""
        return [
            (at, event["update"]["delta"])
            for at, event in zip(self.received_at, self.events, strict=True)
            if event.get("update", {}).get("type") == TEXT_DELTA
        ]


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start the backend subprocess, wait for /healthz, and stop it by PID afterwards."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("backend") / "server.log"
    env = {**os.environ, "CHATKIT_TEST_DELTA_DELAY": str(DELTA_DELAY)}
    env.pop("CHATKIT_TEST_DELTA_COUNT", None)
    command = [
        sys.executable,
        "-m",
        "tests.backend.server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--path",
        CHATKIT_PATH,
    ]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        with httpx.Client(trust_env=False, timeout=1.0) as probe:
            while True:
                if proc.poll() is not None:
                    pytest.fail(f"backend exited early:\n{log_path.read_text()}")
                try:
                    if probe.get(f"{url}/healthz").text == "ok":
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(f"backend not ready in {STARTUP_TIMEOUT}s:\n{log_path.read_text()}")
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@pytest.fixture(scope="module")
def client(base_url: str) -> Iterator[httpx.Client]:
    """HTTP client pinned to the local backend (env proxies ignored)."""
    with httpx.Client(base_url=base_url, trust_env=False, timeout=10.0) as http:
        yield http


def stream_request(
    client: httpx.Client, payload: dict[str, Any], headers: dict[str, str] | None = None
) -> Stream:
    """POST a streaming ChatKit request and collect its SSE `data:` events as they arrive."""
    events: list[dict[str, Any]] = []
    received_at: list[float] = []
    with client.stream("POST", CHATKIT_PATH, json=payload, headers=headers) as response:
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            if line.startswith("data: "):
                received_at.append(time.time())
                events.append(json.loads(line[len("data: ") :]))
        content_type = response.headers["content-type"]
    return Stream(events=events, received_at=received_at, content_type=content_type)


def recorded(client: httpx.Client, request_id: str) -> dict[str, Any]:
    """The single recorded request tagged with our `X-Test-Request-Id` header."""
    records = client.get("/__test__/requests").json()
    matches = [r for r in records if r["headers"].get("x-test-request-id") == request_id]
    assert len(matches) == 1, matches
    return matches[0]


def assert_scripted_reply(stream: Stream) -> None:
    """The assistant part of a stream is the scripted reply, delivered incrementally."""
    assert stream.content_type.startswith("text/event-stream")
    deltas = stream.deltas()
    assert [text for _, text in deltas] == ["Hello", " from", " the", " test", " backend."]
    spread = deltas[-1][0] - deltas[0][0]
    assert spread >= 0.75 * DELTA_DELAY * (DELTA_COUNT - 1), spread
    done = [e for e in stream.events if e["type"] == "thread.item.done"]
    assert done[-1]["item"]["type"] == "assistant_message"
    assert done[-1]["item"]["content"][0]["text"] == EXPECTED_TEXT


@pytest.fixture(scope="module")
def created(client: httpx.Client) -> tuple[str, Stream]:
    """Create one thread (tagged request) and return (request tag, stream)."""
    request_id = uuid.uuid4().hex
    payload = {
        "type": "threads.create",
        "metadata": {"suite": "selfcheck"},
        "params": {"input": user_message("hi")},
    }
    headers = {"Authorization": "Bearer selfcheck-token", "X-Test-Request-Id": request_id}
    return request_id, stream_request(client, payload, headers)


def _thread_id(stream: Stream) -> str:
    return stream.events[0]["thread"]["id"]


def test_threads_create_streams_deltas_over_time(created: tuple[str, Stream]) -> None:
    _, stream = created
    types = [event["type"] for event in stream.events]
    expected_prefix = ["thread.created", "thread.item.done", "stream_options", "thread.item.added"]
    assert types[:4] == expected_prefix
    assert stream.events[1]["item"]["type"] == "user_message"
    assert_scripted_reply(stream)


def test_recording_has_headers_metadata_and_event_timestamps(
    client: httpx.Client, created: tuple[str, Stream]
) -> None:
    request_id, stream = created
    record = recorded(client, request_id)
    assert record["method"] == "POST"
    assert record["path"] == CHATKIT_PATH
    assert record["op"] == "threads.create"
    assert record["headers"]["authorization"] == "Bearer selfcheck-token"
    assert record["metadata"] == {"suite": "selfcheck"}
    assert record["json"]["params"]["input"]["content"][0]["text"] == "hi"
    assert record["size"] == int(record["headers"]["content-length"])
    assert record["streamed"] is True
    assert record["completed_at"] is not None
    stamps = record["event_timestamps"]
    assert len(stamps) == len(stream.events) == len(record["events"])
    assert stamps == sorted(stamps)
    assert record["arrived_at"] <= stamps[0]
    delta_stamps = [e["t"] for e in record["events"] if e["update_type"] == TEXT_DELTA]
    assert len(delta_stamps) == DELTA_COUNT
    assert delta_stamps[-1] - delta_stamps[0] >= 0.75 * DELTA_DELAY * (DELTA_COUNT - 1)


def test_threads_list_returns_created_thread(
    client: httpx.Client, created: tuple[str, Stream]
) -> None:
    _, stream = created
    response = client.post(CHATKIT_PATH, json={"type": "threads.list", "params": {}})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert _thread_id(stream) in [thread["id"] for thread in response.json()["data"]]


def test_add_user_message_streams_and_persists(
    client: httpx.Client, created: tuple[str, Stream]
) -> None:
    _, first = created
    thread_id = _thread_id(first)
    payload = {
        "type": "threads.add_user_message",
        "params": {"thread_id": thread_id, "input": user_message("again")},
    }
    stream = stream_request(client, payload)
    assert stream.events[0]["type"] == "thread.item.done"
    assert stream.events[0]["item"]["content"][0]["text"] == "again"
    assert_scripted_reply(stream)
    items = client.post(
        CHATKIT_PATH,
        json={"type": "items.list", "params": {"thread_id": thread_id, "order": "asc"}},
    ).json()["data"]
    types = [item["type"] for item in items]
    assert types == ["user_message", "assistant_message"] * 2


def test_unknown_thread_returns_404_and_bad_body_returns_400(client: httpx.Client) -> None:
    missing = {
        "type": "threads.add_user_message",
        "params": {"thread_id": "thr_missing", "input": user_message("x")},
    }
    assert client.post(CHATKIT_PATH, json=missing).status_code == 404
    assert client.post(CHATKIT_PATH, content=b"not json").status_code == 400


def test_put_upload_to_subpath_returns_sha256(client: httpx.Client) -> None:
    data = os.urandom(1024 * 1024)
    response = client.put(
        f"{CHATKIT_PATH}/files/blob.bin?name=blob.bin",
        content=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert response.status_code == 200
    assert response.json() == {
        "method": "PUT",
        "path": f"{CHATKIT_PATH}/files/blob.bin",
        "query": "name=blob.bin",
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "content_type": "application/octet-stream",
    }


def test_attachment_two_phase_upload(client: httpx.Client) -> None:
    created = client.post(
        CHATKIT_PATH,
        json={
            "type": "attachments.create",
            "params": {"name": "a.txt", "size": 3, "mime_type": "text/plain"},
        },
    ).json()
    descriptor = created["upload_descriptor"]
    assert descriptor["method"] == "PUT"
    assert descriptor["url"].startswith(str(client.base_url).rstrip("/") + CHATKIT_PATH + "/")
    response = client.put(descriptor["url"], content=b"abc")
    assert response.json()["sha256"] == hashlib.sha256(b"abc").hexdigest()


def test_reset_clears_records(client: httpx.Client) -> None:
    assert client.get("/__test__/requests").json()
    assert client.post("/__test__/reset").status_code == 200
    assert client.get("/__test__/requests").json() == []


# --------------------------------------------------------------------------- fault routes

TEST_ROUTES = f"{CHATKIT_PATH}/_test"


def _record_for(client: httpx.Client, path: str) -> dict[str, Any]:
    """The most recent record of a request to `path`."""
    records = [r for r in client.get("/__test__/requests").json() if r["path"] == path]
    assert records, path
    return records[-1]


def test_status_route_answers_code_body_and_type(client: httpx.Client) -> None:
    response = client.put(f"{TEST_ROUTES}/status/409?body=taken&content_type=text/plain")
    assert (response.status_code, response.text) == (409, "taken")
    assert response.headers["content-type"] == "text/plain"
    empty = client.get(f"{TEST_ROUTES}/status/204?body=ignored")
    assert (empty.status_code, empty.content) == (204, b"")
    assert _record_for(client, f"{TEST_ROUTES}/status/204")["status"] == 204


def test_cookie_hop_gzip_and_large_routes(client: httpx.Client) -> None:
    cookies = client.get(f"{TEST_ROUTES}/cookies")
    assert len(cookies.headers.get_list("set-cookie")) == 2
    hop = client.get(f"{TEST_ROUTES}/hop")
    assert hop.headers["connection"] == "X-Hop-Secret"
    assert (hop.headers["x-hop-secret"], hop.headers["keep-alive"]) == ("1", "timeout=5")
    assert hop.headers["x-end-to-end"] == "yes"
    with client.stream("GET", f"{TEST_ROUTES}/gzip") as response:
        raw = b"".join(response.iter_raw())
        assert response.headers["content-encoding"] == "gzip"
        assert int(response.headers["content-length"]) == len(raw)
    assert client.get(f"{TEST_ROUTES}/gzip").json()["compressed"] is True
    large = client.get(f"{TEST_ROUTES}/large?mb=2")
    assert len(large.content) == 2 * 1024 * 1024
    assert hashlib.sha256(large.content).hexdigest() == large.headers["x-sha256"]


def test_sse_route_streams_and_notices_a_client_that_leaves(client: httpx.Client) -> None:
    with client.stream("GET", f"{TEST_ROUTES}/sse?events=3&delay=0.1&size=200") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert [json.loads(e[6:])["index"] for e in events] == [0, 1, 2]
    assert all(195 <= len(e) + 2 <= 205 for e in events)
    done = _record_for(client, f"{TEST_ROUTES}/sse")
    assert len(done["event_timestamps"]) == 3 and done["disconnected_at"] is None

    with httpx.Client(base_url=client.base_url, trust_env=False, timeout=10.0) as leaving:
        with leaving.stream("GET", f"{TEST_ROUTES}/sse?events=50&delay=0.2") as response:
            next(line for line in response.iter_lines() if line.startswith("data: "))
    closed_at = time.time()
    time.sleep(1.0)
    left = _record_for(client, f"{TEST_ROUTES}/sse")
    assert left["disconnected_at"] is not None
    assert left["disconnected_at"] - closed_at < 1.0
    assert len(left["event_timestamps"]) < 50


def test_slow_route_waits_and_notices_a_client_that_leaves(client: httpx.Client) -> None:
    with pytest.raises(httpx.ReadTimeout):
        client.get(f"{TEST_ROUTES}/slow?seconds=5", timeout=0.3)
    gave_up_at = time.time()
    time.sleep(0.5)
    record = _record_for(client, f"{TEST_ROUTES}/slow")
    assert record["disconnected_at"] is not None
    assert record["disconnected_at"] - gave_up_at < 0.5
    assert client.get(f"{TEST_ROUTES}/slow?seconds=0.2").json() == {"slept": 0.2}


def test_die_route_breaks_the_body_after_n_events(client: httpx.Client) -> None:
    events: list[str] = []
    with pytest.raises(httpx.RemoteProtocolError):
        with client.stream("GET", f"{TEST_ROUTES}/die?after=3") as response:
            events.extend(line for line in response.iter_lines() if line.startswith("data: "))
    assert len(events) == 3
    assert _record_for(client, f"{TEST_ROUTES}/die")["aborted_at"] is not None


def test_requests_no_route_takes_are_recorded_too(client: httpx.Client) -> None:
    response = client.post("/elsewhere/x?q=1", content=b"stray")
    assert (response.status_code, response.text) == (404, "Not Found")
    assert client.patch(f"{CHATKIT_PATH}/files/x").status_code == 405
    stray = _record_for(client, "/elsewhere/x")
    assert (stray["status"], stray["query"], stray["size"]) == (404, "q=1", 5)
    assert _record_for(client, f"{CHATKIT_PATH}/files/x")["status"] == 405
