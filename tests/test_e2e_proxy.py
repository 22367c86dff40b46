"""The built app's /api/chatkit proxy, driven as a real HTTP proxy in front of the backend.

Everything goes to 127.0.0.1: the `next start` server and the scripted backend of the
`running_app` fixture, whose `_test/...` routes (tests/backend/server.py) answer odd
statuses, headers, encodings, slow or broken streams, and record what reached them.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import posixpath
import socket
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import httpx
import pytest

from tests import harness
from tests.conftest import ALLOWED_ORIGIN, BACKEND_PREFIX, UPSTREAM_TIMEOUT_MS, RunningApp

pytestmark = pytest.mark.slow

CLAIMS = {"sub": "user-proxy-7", "name": "Grace Hopper", "tenant": "navy"}
TOKEN = harness.make_jwt(CLAIMS)
OTHER_COOKIE_VALUE = "other-cookie-value-0f3a9c"  # a second cookie the browser holds
CHATKIT = BACKEND_PREFIX + "/chatkit"  # the backend's ChatKit path
TEST_ROUTES = "/api/chatkit/_test"  # the backend's fault routes, as the browser sees them
CLIENT_TIMEOUT = 30.0


# --------------------------------------------------------------------------- helpers


def client(
    app: RunningApp, *, cookie: bool = True, timeout: float = CLIENT_TIMEOUT
) -> httpx.Client:
    """An httpx client for the app, holding the token cookie unless told not to."""
    cookies = {app.cookie_name: TOKEN} if cookie else {}
    return httpx.Client(base_url=app.url, trust_env=False, cookies=cookies, timeout=timeout)


def wait_for(
    app: RunningApp, predicate: Callable[[list[dict[str, Any]]], bool], seconds: float = 5.0
) -> list[dict[str, Any]]:
    """Poll the backend recorder until `predicate(records)` holds or `seconds` pass."""
    deadline = time.monotonic() + seconds
    records = app.backend_requests()
    while not predicate(records) and time.monotonic() < deadline:
        time.sleep(0.05)
        records = app.backend_requests()
    return records


def only_record(app: RunningApp, path: str) -> dict[str, Any]:
    """The single recorded backend request to `path` (its path as the backend saw it)."""
    matches = [r for r in app.backend_requests() if r["path"] == path]
    assert len(matches) == 1, [r["path"] for r in app.backend_requests()]
    return matches[0]


def collect_events(response: httpx.Response) -> tuple[list[harness.SseEvent], Exception | None]:
    """Every SSE event of a response, and the transport error that ended it, if any."""
    events: list[harness.SseEvent] = []
    try:
        for event in harness.stream_events(response):
            events.append(event)
    except (httpx.RemoteProtocolError, httpx.ReadError) as error:
        return events, error
    return events, None


def raw_request(
    app: RunningApp, method: str, target: str, headers: dict[str, str]
) -> tuple[int, dict[str, str]]:
    """Send `target` byte for byte (no client-side normalisation): status and headers."""
    address = urlsplit(app.url)
    lines = [f"{method} {target} HTTP/1.1", f"Host: {address.netloc}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    received = b""
    deadline = time.monotonic() + 15
    with socket.create_connection((address.hostname, address.port), timeout=15) as sock:
        sock.sendall(request)
        while b"\r\n\r\n" not in received and time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    head = received.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    assert head[0].startswith("HTTP/1."), f"no HTTP answer to {target!r}: {received[:200]!r}"
    fields = dict(line.split(":", 1) for line in head[1:] if ":" in line)
    return int(head[0].split()[1]), {k.strip().lower(): v.strip() for k, v in fields.items()}


def decode_body(raw: bytes, content_encoding: str | None) -> bytes:
    """Undo a Content-Encoding chain of gzip/deflate/identity, last applied first."""
    codings = [c.strip().lower() for c in (content_encoding or "").split(",") if c.strip()]
    for coding in reversed(codings):
        if coding in ("gzip", "x-gzip"):
            raw = gzip.decompress(raw)
        elif coding == "deflate":
            raw = zlib.decompress(raw)
        else:
            assert coding == "identity", f"unexpected Content-Encoding {content_encoding!r}"
    return raw


def multipart_body(boundary: str, payload: bytes) -> bytes:
    """A multipart/form-data body with one text field and one file part."""
    return b"".join(
        [
            f"--{boundary}\r\n".encode(),
            b'Content-Disposition: form-data; name="purpose"\r\n\r\n',
            b"attachment\r\n",
            f"--{boundary}\r\n".encode(),
            b'Content-Disposition: form-data; name="file"; filename="blob.bin"\r\n',
            b"Content-Type: application/octet-stream\r\n\r\n",
            payload,
            b"\r\n",
            f"--{boundary}--\r\n".encode(),
        ]
    )


def inside_chatkit(path: str) -> bool:
    """Whether a backend path, with dot segments resolved (and \\ read as /), is in ChatKit's."""
    resolved = posixpath.normpath(unquote(path).replace("\\", "/"))
    return resolved == CHATKIT or resolved.startswith(CHATKIT + "/")


# --------------------------------------------------------------------------- subpaths


@pytest.mark.parametrize("method", ["PUT", "POST", "GET"])
def test_subpath_reaches_backend_below_chatkit_path_with_query_kept(
    running_app: RunningApp, method: str
) -> None:
    running_app.reset_backend()

    with client(running_app) as http:
        response = http.request(method, "/api/chatkit/files/doc-1/content?a=1&b=x%20y")

    assert response.status_code == 200, response.text
    record = only_record(running_app, CHATKIT + "/files/doc-1/content")
    assert record["method"] == method
    # Next hands the route `b=x+y` for `b=x%20y` (it re-serialises the query before the
    # proxy sees it), so compare the query as the backend decodes it, order included.
    assert parse_qsl(record["query"], keep_blank_values=True) == [("a", "1"), ("b", "x y")]
    assert record["headers"]["authorization"] == f"Bearer {TOKEN}"


@pytest.mark.parametrize(
    "target",
    [
        "/api/chatkit/%2e%2e/x",
        "/api/chatkit/..%2fx",
        "/api/chatkit/a%2F..%2F..%2Fx",
        "/api/chatkit/..%5cx",
        "/api/chatkit/a\\..\\x",
    ],
)
def test_encoded_traversal_never_leaves_the_chatkit_path(
    running_app: RunningApp, target: str
) -> None:
    running_app.reset_backend()

    cookie = {"Cookie": f"{running_app.cookie_name}={TOKEN}"}
    status, headers = raw_request(running_app, "GET", target, cookie)

    records = running_app.backend_requests()
    escaped = [r["path"] for r in records if not inside_chatkit(r["path"])]
    assert escaped == []
    if 300 <= status < 400:
        # Next itself answers a path with backslashes by redirecting to its normalised
        # form before any route runs: acceptable if nothing was forwarded and the
        # redirect stays below /api/chatkit.
        location = posixpath.normpath(urlsplit(headers.get("location", "")).path)
        assert location.startswith("/api/chatkit/"), f"{target!r} redirected to {location!r}"
        assert records == []
    else:
        assert status >= 400, f"{target!r} answered {status}"


# --------------------------------------------------------------------------- uploads


@pytest.mark.parametrize("method", ["PUT", "POST"])
def test_multipart_upload_arrives_byte_for_byte(running_app: RunningApp, method: str) -> None:
    running_app.reset_backend()
    boundary = "----chatkit-e2e-boundary-7MA4YWxkTrZu0gW"
    body = multipart_body(boundary, os.urandom(5 * 1024 * 1024))
    content_type = f"multipart/form-data; boundary={boundary}"

    with client(running_app, timeout=60) as http:
        response = http.request(
            method,
            "/api/chatkit/files/upload",
            content=body,
            headers={"Content-Type": content_type},
        )

    assert response.status_code == 200, response.text
    record = only_record(running_app, CHATKIT + "/files/upload")
    assert record["size"] == len(body)
    assert record["sha256"] == hashlib.sha256(body).hexdigest()
    assert record["content_type"] == content_type
    headers = record["headers"]
    if "content-length" in headers:
        assert headers["content-length"] == str(len(body))
        assert "transfer-encoding" not in headers
    else:
        assert headers.get("transfer-encoding", "").lower() == "chunked"


# --------------------------------------------------------------------------- request headers


def test_hop_by_hop_and_unlisted_request_headers_stay_behind(running_app: RunningApp) -> None:
    running_app.reset_backend()
    headers = {
        "Cookie": f"{running_app.cookie_name}={TOKEN}; other={OTHER_COOKIE_VALUE}",
        "Connection": "X-Named-Hop",
        "X-Named-Hop": "named-by-connection",
        "Keep-Alive": "timeout=30",
        "TE": "trailers",
        "Trailer": "X-Checksum",
        "Upgrade": "h2c",
        "Proxy-Authorization": "Basic cHJveHk6c2VjcmV0",
        "X-Random": "not-configured",
        "Accept-Language": "fr-CH, fr;q=0.9",
        "X-User-ID": "spoofed-user",
    }

    with httpx.Client(base_url=running_app.url, trust_env=False, timeout=CLIENT_TIMEOUT) as http:
        response = http.post(
            "/api/chatkit", json={"type": "threads.list", "params": {}}, headers=headers
        )

    assert response.status_code == 200, response.text
    (record,) = running_app.backend_requests()
    seen = record["headers"]
    for name in (
        "cookie",
        "x-named-hop",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "proxy-authorization",
        "x-random",
    ):
        assert name not in seen, f"{name}: {seen[name]!r} reached the backend"
    assert "x-named-hop" not in seen.get("connection", "").lower()
    assert seen["accept-language"] == "fr-CH, fr;q=0.9"
    assert seen["x-user-id"] == CLAIMS["sub"]
    assert seen["host"] == urlsplit(running_app.backend.base_url).netloc


# --------------------------------------------------------------------------- CSRF


def csrf_post(app: RunningApp, **headers: str) -> httpx.Response:
    with client(app) as http:
        return http.post(
            "/api/chatkit", json={"type": "threads.list", "params": {}}, headers=headers
        )


@pytest.mark.parametrize(
    "headers",
    [{"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}],
    ids=["foreign-origin", "cross-site-fetch-without-origin"],
)
def test_cross_site_request_with_cookie_is_refused_before_the_backend(
    running_app: RunningApp, headers: dict[str, str]
) -> None:
    running_app.reset_backend()

    response = csrf_post(running_app, **headers)

    assert response.status_code == 403
    assert running_app.backend_requests() == []


@pytest.mark.parametrize("origin", ["own", ALLOWED_ORIGIN, None], ids=["own", "allowed", "none"])
def test_same_origin_listed_origin_or_no_origin_is_let_through(
    running_app: RunningApp, origin: str | None
) -> None:
    running_app.reset_backend()
    headers = {} if origin is None else {"Origin": running_app.url if origin == "own" else origin}

    response = csrf_post(running_app, **headers)

    assert response.status_code == 200, response.text
    assert len(running_app.backend_requests()) == 1


# --------------------------------------------------------------------------- responses


def test_204_stays_204_with_empty_body(running_app: RunningApp) -> None:
    with client(running_app) as http:
        response = http.get(TEST_ROUTES + "/status/204")

    assert response.status_code == 204
    assert response.content == b""


def test_text_plain_response_keeps_type_and_body(running_app: RunningApp) -> None:
    with client(running_app) as http:
        response = http.get(
            TEST_ROUTES + "/status/200",
            params={"body": "plain words, not JSON", "content_type": "text/plain; charset=utf-8"},
        )

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text == "plain words, not JSON"


@pytest.mark.parametrize("code", [401, 404, 409, 429])
def test_backend_error_codes_keep_code_and_body(running_app: RunningApp, code: int) -> None:
    body = json.dumps({"error": f"backend said {code}"})
    with client(running_app) as http:
        response = http.get(
            TEST_ROUTES + f"/status/{code}",
            params={"body": body, "content_type": "application/json"},
        )

    assert response.status_code == code
    assert response.json() == {"error": f"backend said {code}"}


def test_two_set_cookie_headers_arrive_separately(running_app: RunningApp) -> None:
    with client(running_app) as http:
        response = http.get(TEST_ROUTES + "/cookies")

    assert response.status_code == 200
    cookies = response.headers.get_list("set-cookie")
    assert len(cookies) == 2, cookies
    assert cookies[0].startswith("first=one")
    assert cookies[1].startswith("second=two")


def test_hop_by_hop_response_headers_are_dropped(running_app: RunningApp) -> None:
    # Connection: close makes next start's own response carry no Keep-Alive of its own,
    # so any Keep-Alive that arrives was copied from the backend.
    with client(running_app) as http:
        response = http.get(TEST_ROUTES + "/hop", headers={"Connection": "close"})

    assert response.status_code == 200
    assert "x-hop-secret" not in response.headers
    assert "keep-alive" not in response.headers
    assert "x-hop-secret" not in response.headers.get("connection", "").lower()
    assert response.headers["x-end-to-end"] == "yes"


def test_gzip_response_arrives_decodable_with_honest_length(running_app: RunningApp) -> None:
    expected = {"compressed": True, "items": [f"item-{index}" for index in range(200)]}
    with client(running_app) as http:
        with http.stream("GET", TEST_ROUTES + "/gzip", headers={"Accept-Encoding": "gzip"}) as r:
            raw = b"".join(r.iter_raw())
            status, headers = r.status_code, r.headers

    assert status == 200
    if "content-length" in headers:
        assert int(headers["content-length"]) == len(raw)
    assert json.loads(decode_body(raw, headers.get("content-encoding"))) == expected


# --------------------------------------------------------------------------- streaming


def test_sse_reaches_client_event_by_event_uncompressed(running_app: RunningApp) -> None:
    running_app.reset_backend()

    with client(running_app) as http:
        with http.stream(
            "GET",
            TEST_ROUTES + "/sse?events=6&delay=0.3",
            headers={"Accept-Encoding": "gzip, br"},
        ) as response:
            events, error = collect_events(response)
            headers = response.headers

    assert error is None
    assert [event.data["index"] for event in events] == list(range(6))
    assert "content-encoding" not in headers
    assert "no-transform" in headers["cache-control"]
    assert headers["x-accel-buffering"] == "no"
    record = only_record(running_app, CHATKIT + "/_test/sse")
    # Five 0.3 s gaps: an unbuffered proxy delivers the first event about 1.5 s before the
    # backend writes the last one.
    assert events[0].received_at < record["event_timestamps"][-1] - 0.75


def test_stream_gap_longer_than_upstream_timeout_still_completes(running_app: RunningApp) -> None:
    running_app.reset_backend()
    gap = UPSTREAM_TIMEOUT_MS / 1000 + 1.0

    with client(running_app) as http:
        with http.stream("GET", TEST_ROUTES + f"/sse?events=3&delay={gap}") as response:
            status = response.status_code
            events, error = collect_events(response)

    assert status == 200
    assert error is None
    assert [event.data["index"] for event in events] == [0, 1, 2]
    assert only_record(running_app, CHATKIT + "/_test/sse")["completed_at"] is not None


def test_large_response_arrives_intact(running_app: RunningApp) -> None:
    with client(running_app, timeout=60) as http:
        response = http.get(TEST_ROUTES + "/large?mb=8")

    assert response.status_code == 200
    assert len(response.content) == 8 * 1024 * 1024
    assert hashlib.sha256(response.content).hexdigest() == response.headers["x-sha256"]


def test_forty_concurrent_streams_all_complete(running_app: RunningApp) -> None:
    def one_stream(number: int) -> list[int]:
        with client(running_app) as http:
            with http.stream("GET", TEST_ROUTES + f"/sse?events=5&delay=0.1&n={number}") as r:
                assert r.status_code == 200
                events, error = collect_events(r)
        assert error is None, f"stream {number}: {error!r}"
        return [event.data["index"] for event in events]

    with ThreadPoolExecutor(max_workers=40) as pool:
        futures = [pool.submit(one_stream, number) for number in range(40)]
        results = [future.result(timeout=90) for future in futures]

    assert results == [[0, 1, 2, 3, 4]] * 40


# --------------------------------------------------------------------------- faults


def test_backend_slower_than_timeout_gives_504_json(running_app: RunningApp) -> None:
    with client(running_app) as http:
        response = http.get(TEST_ROUTES + "/slow?seconds=8")

    assert response.status_code == 504
    assert response.headers["content-type"].startswith("application/json")
    assert isinstance(response.json()["error"], str)


def test_browser_leaving_mid_stream_disconnects_the_backend(running_app: RunningApp) -> None:
    running_app.reset_backend()

    with client(running_app) as http:
        with http.stream("GET", TEST_ROUTES + "/sse?events=50&delay=0.2") as response:
            first = next(harness.stream_events(response))
    closed_at = time.time()

    assert first.data["index"] == 0
    records = wait_for(running_app, lambda rs: bool(rs) and rs[0].get("disconnected_at"))
    record = records[0]
    assert record["disconnected_at"] is not None, "the backend stream was never cut"
    assert record["disconnected_at"] - closed_at < 2.0
    assert len(record["event_timestamps"]) < 50


def test_browser_leaving_before_headers_disconnects_the_backend(running_app: RunningApp) -> None:
    running_app.reset_backend()

    with client(running_app, timeout=0.5) as http:
        with pytest.raises(httpx.ReadTimeout):
            http.get(TEST_ROUTES + "/slow?seconds=8")
    closed_at = time.time()

    records = wait_for(running_app, lambda rs: bool(rs) and rs[0].get("disconnected_at"))
    record = records[0]
    assert record["disconnected_at"] is not None, "the backend kept waiting"
    assert record["disconnected_at"] - closed_at < 2.0
    # The proxy's own upstream timeout would also cut the backend, 2 s after it was
    # called: the browser's leave (after 0.5 s) must have done it well before that.
    assert record["disconnected_at"] - record["arrived_at"] < UPSTREAM_TIMEOUT_MS / 1000 - 0.4


def test_backend_dying_mid_stream_ends_client_stream_with_error_event(
    running_app: RunningApp,
) -> None:
    with client(running_app, timeout=10) as http:
        with http.stream("GET", TEST_ROUTES + "/die?after=3") as response:
            status = response.status_code
            events, _ = collect_events(response)  # ReadTimeout (a hang) is not caught

    assert status == 200
    assert [event.data.get("index") for event in events[:3]] == [0, 1, 2]
    assert len(events) == 4, [event.data for event in events]
    assert events[-1].data["type"] == "error"


# --------------------------------------------------------------------------- logs (last)


def test_zz_server_log_holds_no_token_or_cookie_value(running_app: RunningApp) -> None:
    """Runs after the tests above (file order), whose faults made the proxy log."""
    log = running_app.server.log()

    assert "Next.js" in log  # the right file: next start's banner
    assert TOKEN not in log
    for part in TOKEN.split("."):
        assert part not in log
    assert OTHER_COOKIE_VALUE not in log
