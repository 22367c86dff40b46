"""The built app, served by `next start`, in front of the real scripted ChatKit backend."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests import harness
from tests.conftest import BACKEND_API_KEY, BACKEND_PREFIX, RunningApp

pytestmark = pytest.mark.slow

CLAIMS = {"sub": "user-42", "name": "Ada Lovelace", "tenant": "acme"}
PAGE_URL = "http://127.0.0.1/support?topic=billing"


def chatkit_post(
    app: RunningApp, payload: dict[str, Any], cookie: bool = True, **headers: str
) -> httpx.Response:
    cookies = {app.cookie_name: harness.make_jwt(CLAIMS)} if cookie else {}
    with httpx.Client(trust_env=False, cookies=cookies, timeout=30) as client:
        return client.post(app.url + "/api/chatkit", json=payload, headers=headers)


def streamed_events(
    app: RunningApp, payload: dict[str, Any], **headers: str
) -> tuple[httpx.Response, list[harness.SseEvent]]:
    cookies = {app.cookie_name: harness.make_jwt(CLAIMS)}
    with httpx.Client(trust_env=False, cookies=cookies, timeout=30) as client:
        with client.stream("POST", app.url + "/api/chatkit", json=payload, headers=headers) as r:
            return r, list(harness.stream_events(r))


def create_thread(app: RunningApp, text: str) -> list[harness.SseEvent]:
    response, events = streamed_events(
        app, {"type": "threads.create", "params": {"input": harness.user_message(text)}}
    )
    assert response.status_code == 200
    return events


def test_missing_cookie_returns_401_without_calling_backend(running_app: RunningApp) -> None:
    running_app.reset_backend()

    response = chatkit_post(running_app, {"type": "threads.list", "params": {}}, cookie=False)

    assert response.status_code == 401
    assert running_app.cookie_name in response.json()["error"]
    assert running_app.backend_requests() == []


def test_cookie_becomes_bearer_header_with_configured_headers(running_app: RunningApp) -> None:
    running_app.reset_backend()
    token = harness.make_jwt(CLAIMS)

    response = chatkit_post(
        running_app,
        {"type": "threads.list", "params": {}},
        **{"X-Page-URL": PAGE_URL, "X-User-ID": "spoofed", "X-Unlisted": "dropped"},
    )

    assert response.status_code == 200
    (record,) = running_app.backend_requests()
    headers = record["headers"]
    assert record["path"] == BACKEND_PREFIX + "/chatkit"
    assert headers["authorization"] == f"Bearer {token}"
    assert headers["x-page-url"] == PAGE_URL
    assert headers["x-user-id"] == "user-42"  # from the token, not the browser
    assert headers["x-tenant"] == "acme"
    assert headers["x-api-key"] == BACKEND_API_KEY
    assert headers["x-client"] == 'web "e2e" \\ v1'
    assert "x-unlisted" not in headers
    assert "cookie" not in headers


def test_threads_create_streams_events_as_the_backend_sends_them(
    running_app: RunningApp,
) -> None:
    running_app.reset_backend()

    response, events = streamed_events(
        running_app,
        {"type": "threads.create", "params": {"input": harness.user_message("Hello?")}},
    )

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert "no-transform" in response.headers["cache-control"]
    kinds = [event.data["type"] for event in events]
    assert kinds[0] == "thread.created"
    assert kinds[-1] == "thread.item.done"
    deltas = [
        e.data["update"]["delta"]
        for e in events
        if e.data["type"] == "thread.item.updated"
        and e.data["update"]["type"] == "assistant_message.content_part.text_delta"
    ]
    assert "".join(deltas) == "Hello from the test backend."

    (record,) = running_app.backend_requests()
    last_sent = record["event_timestamps"][-1]
    # The backend sleeps 0.2 s between its five deltas: an unbuffered proxy hands the
    # first event over about a second before the backend writes its last one.
    assert events[0].received_at < last_sent - 0.5


def test_threads_list_returns_json_with_created_thread(running_app: RunningApp) -> None:
    events = create_thread(running_app, "Keep this thread")
    thread_id = events[0].data["thread"]["id"]

    response = chatkit_post(running_app, {"type": "threads.list", "params": {"limit": 50}})

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert thread_id in [thread["id"] for thread in response.json()["data"]]


def test_follow_up_message_streams_on_the_same_thread(running_app: RunningApp) -> None:
    thread_id = create_thread(running_app, "First")[0].data["thread"]["id"]
    running_app.reset_backend()

    response, events = streamed_events(
        running_app,
        {
            "type": "threads.add_user_message",
            "params": {"thread_id": thread_id, "input": harness.user_message("Second")},
        },
    )

    assert response.status_code == 200
    assert events[-1].data["type"] == "thread.item.done"
    (record,) = running_app.backend_requests()
    assert record["op"] == "threads.add_user_message"
    assert events[0].received_at < record["event_timestamps"][-1] - 0.5


def test_backend_error_status_and_body_pass_through(running_app: RunningApp) -> None:
    response = chatkit_post(
        running_app, {"type": "threads.get_by_id", "params": {"thread_id": "thr_missing"}}
    )

    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/json")
    assert "error" in response.json()


def test_page_without_cookie_asks_to_sign_in_and_queues_script(
    running_app: RunningApp,
) -> None:
    with httpx.Client(trust_env=False) as client:
        html = client.get(running_app.url + "/").text

    head = html.split("</head>", 1)[0]
    assert "https://cdn.platform.openai.com/deployments/chatkit/chatkit.js" in head
    assert "Sign in first" in html
    assert running_app.cookie_name in html


def test_page_with_cookie_renders_the_chat_for_the_user(running_app: RunningApp) -> None:
    cookies = {running_app.cookie_name: harness.make_jwt(CLAIMS)}
    with httpx.Client(trust_env=False, cookies=cookies) as client:
        html = client.get(running_app.url + "/").text

    assert "<openai-chatkit" in html
    assert "Signed in as <!-- -->Ada Lovelace" in html or "Signed in as Ada Lovelace" in html
    assert "Sign in first" not in html
    assert harness.make_jwt(CLAIMS) not in html  # the token never reaches the page


def test_unreachable_backend_returns_502_json(
    running_app: RunningApp, node_workspace, tmp_path_factory
) -> None:
    # The same build, started without CHATKIT_UPSTREAM_URL: its rendered default points
    # at a port nothing listens on.
    server = harness.start_app(running_app.app_dir, node_workspace, tmp_path_factory.mktemp("dead"))
    try:
        cookies = {running_app.cookie_name: harness.make_jwt(CLAIMS)}
        with httpx.Client(trust_env=False, cookies=cookies, timeout=30) as client:
            response = client.post(server.base_url + "/api/chatkit", json={"type": "threads.list"})
    finally:
        server.stop()

    assert response.status_code == 502
    assert "error" in response.json()
    assert "[chatkit-proxy] backend unreachable" in server.log()
