"""The built app in headless Chromium, in front of the real scripted ChatKit backend.

Playwright drives Debian's Chromium (/usr/bin/chromium; no browser is downloaded) at the
`running_app` fixture: the e2e render built with `next build` and served by `next start`
on 127.0.0.1. The token goes in as an httpOnly cookie, as a login would set it.

The ChatKit CDN is not reachable from here, so the real web component script is never
loaded: every test serves a stand-in at its URL (https://cdn.platform.openai.com/
deployments/chatkit/chatkit.js) with `page.route`, fulfilled from
tests/browser/chatkit-standin.js. The stand-in defines `<openai-chatkit>`, records the
options @openai/chatkit-react hands it, and makes ChatKit-shaped requests through
`options.api.fetch`, so the app's fetch wrapper, its proxy route and the backend all run
for real; only the component's UI is missing. A catch-all route aborts (and records) any
other request that does not go to the app, so the browser reaches nothing but 127.0.0.1.

Set CHATKIT_UPDATE_SCREENSHOTS=1 to also write the screenshots to docs/screenshots/.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import struct
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Route, expect, sync_playwright

from tests import harness
from tests.conftest import BACKEND_PREFIX, E2E_ANSWERS, RunningApp

pytestmark = pytest.mark.slow

SCRIPT_URL = "https://cdn.platform.openai.com/deployments/chatkit/chatkit.js"
STANDIN_PATH = Path(__file__).parent / "browser" / "chatkit-standin.js"
SCREENSHOT_DIR = harness.REPO_ROOT / "docs" / "screenshots"
LOCALHOST_DOMAIN_KEY = "domain_pk_localhost_development_placeholder"
PROJECT_TITLE = E2E_ANSWERS["project_name"]

CLAIMS = {"sub": "user-42", "name": "Ada Lovelace", "email": "ada@example.com", "tenant": "acme"}
PAGE_PATH = "/?topic=billing"

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# The panel gives the script 5 s to define <openai-chatkit> before it says it did not.
SCRIPT_TIMEOUT_S = 5.0
ALERT_DEADLINE_S = 7.0


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            chromium.close()


@dataclass
class OpenPage:
    """A page of the app in its own browser context, with what it did on the side."""

    context: BrowserContext
    page: Page
    navigated_at: float
    page_errors: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    script_requests: list[str] = field(default_factory=list)

    def evaluate(self, expression: str, arg: Any = None) -> Any:
        return self.page.evaluate(expression, arg)

    def wait_for_options(self) -> None:
        self.page.wait_for_function(
            "() => window.__chatkit !== undefined && window.__chatkit.options !== null",
            timeout=10_000,
        )

    def assert_clean(self) -> None:
        """No uncaught error, no console error, no request that left 127.0.0.1."""
        assert self.page_errors == []
        assert self.console_errors == []
        assert self.blocked == []


@pytest.fixture
def open_page(browser: Browser, running_app: RunningApp) -> Iterator[Callable[..., OpenPage]]:
    contexts: list[BrowserContext] = []
    standin = STANDIN_PATH.read_text()

    def open_(signed_in: bool = True, script: str = "standin", path: str = PAGE_PATH) -> OpenPage:
        context = browser.new_context(viewport={"width": 1000, "height": 720})
        contexts.append(context)
        if signed_in:
            context.add_cookies(
                [
                    {
                        "name": running_app.cookie_name,
                        "value": harness.make_jwt(CLAIMS),
                        "url": running_app.url,
                        "httpOnly": True,
                        "sameSite": "Lax",
                    }
                ]
            )
        page = context.new_page()
        opened = OpenPage(context, page, navigated_at=0.0)
        app_origin = running_app.url + "/"

        def only_the_app(route: Route) -> None:
            url = route.request.url
            if url.startswith(app_origin):
                route.continue_()
            else:
                opened.blocked.append(url)
                route.abort()

        def chatkit_script(route: Route) -> None:
            opened.script_requests.append(route.request.url)
            if script == "standin":
                route.fulfill(
                    status=200,
                    content_type="text/javascript; charset=utf-8",
                    body=standin,
                    headers={"Access-Control-Allow-Origin": "*"},
                )
            else:
                route.abort("blockedbyclient")

        context.route("**/*", only_the_app)
        page.route(SCRIPT_URL, chatkit_script)  # page routes win over context routes
        page.on("pageerror", lambda error: opened.page_errors.append(str(error)))
        page.on(
            "console",
            lambda message: (
                opened.console_errors.append(f"{message.text} @ {message.location}")
                if message.type == "error"
                else None
            ),
        )
        opened.navigated_at = time.monotonic()
        page.goto(running_app.url + path, wait_until="load")
        return opened

    yield open_
    for context in contexts:
        context.close()


def only_record(app: RunningApp) -> dict[str, Any]:
    records = app.backend_requests()
    assert len(records) == 1, [(r["method"], r["path"]) for r in records]
    return records[0]


def sent_fetch(ui: OpenPage, path: str) -> dict[str, Any]:
    """The one call the fetch wrapper made to the browser's fetch for `path`."""
    fetches = ui.evaluate("() => window.__chatkitStandIn.fetches()")
    matching = [f for f in fetches if f["url"].split("?", 1)[0].endswith(path)]
    assert len(matching) == 1, fetches
    return matching[0]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- screenshots


def assert_valid_png(data: bytes) -> tuple[int, int]:
    """Checks signature, chunk CRCs, IHDR, and that IDAT inflates to the image's size."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature"
    offset, chunks, idat = 8, [], b""
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"bad CRC in {kind!r}"
        chunks.append(kind)
        if kind == b"IDAT":
            idat += body
        offset += 12 + length
    assert chunks[0] == b"IHDR" and chunks[-1] == b"IEND"
    ihdr = data[16:29]
    width, height, depth, color = struct.unpack(">IIBB", ihdr[:10])
    assert width > 0 and height > 0
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[color]
    row = 1 + (width * channels * depth + 7) // 8
    assert len(zlib.decompress(idat)) == height * row
    return width, height


def save_screenshot(page: Page, tmp_path: Path, name: str) -> bytes:
    png = page.screenshot(full_page=True, type="png")
    width, height = assert_valid_png(png)
    assert width >= 800 and height >= 300
    (tmp_path / name).write_bytes(png)
    assert assert_valid_png((tmp_path / name).read_bytes()) == (width, height)
    if os.environ.get("CHATKIT_UPDATE_SCREENSHOTS") == "1":
        SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
        (SCREENSHOT_DIR / name).write_bytes(png)
    return png


# --------------------------------------------------------------------------- tests


def test_server_html_queues_the_script_in_head_before_any_js(running_app: RunningApp) -> None:
    cookies = {running_app.cookie_name: harness.make_jwt(CLAIMS)}
    with httpx.Client(trust_env=False, cookies=cookies) as client:
        response = client.get(running_app.url + PAGE_PATH)

    assert response.status_code == 200
    html = response.text
    head, _, body = html.partition("</head>")
    assert "<openai-chatkit" in body  # the signed-in page, not the sign-in hint
    # Next renders a beforeInteractive script as a preload in <head>, so the browser
    # starts fetching it while parsing, and queues it in self.__next_s, which Next's
    # bootstrap runs before React hydrates the page.
    escaped = re.escape(SCRIPT_URL)
    preloads = [
        tag
        for tag in re.findall(r"<link\b[^>]*>", head)
        if re.search(r'href="' + escaped + '"', tag)
        and 'rel="preload"' in tag
        and 'as="script"' in tag
    ]
    assert preloads, f"no <link rel=preload as=script> for {SCRIPT_URL} in <head>:\n{head}"
    queued = re.search(
        r"\(self\.__next_s=self\.__next_s\|\|\[\]\)\.push\(\[" + re.escape(json.dumps(SCRIPT_URL)),
        html,
    )
    assert queued, "the script URL is not queued in self.__next_s"
    assert queued.start() < html.index("<openai-chatkit")
    assert harness.make_jwt(CLAIMS) not in html


def test_options_reach_the_element_and_no_alert_after_the_timeout(open_page) -> None:
    ui = open_page()
    ui.wait_for_options()

    options = ui.evaluate("() => window.__chatkitStandIn.describeOptions()")
    assert options["apiUrl"] == "/api/chatkit"
    assert options["domainKey"] == LOCALHOST_DOMAIN_KEY
    assert options["fetchType"] == "function"
    assert options["elementInPanel"]
    assert options["setOptionsCalls"][0]["connected"]
    expect(ui.page.get_by_text("Signed in as Ada Lovelace")).to_be_visible()
    # The token stays out of reach of the page's scripts.
    assert harness.make_jwt(CLAIMS) not in ui.evaluate("() => document.cookie")

    # The script loaded, so past the panel's timeout no alert may claim it did not.
    remaining = SCRIPT_TIMEOUT_S + 0.7 - (time.monotonic() - ui.navigated_at)
    if remaining > 0:
        ui.page.wait_for_timeout(remaining * 1000)
    assert ui.page.locator("main").get_by_role("alert").count() == 0
    assert ui.script_requests == [SCRIPT_URL]
    ui.assert_clean()


@pytest.mark.parametrize("how", ["method", "detached"])
def test_threads_create_streams_through_the_proxy_with_user_context(
    open_page, running_app: RunningApp, how: str
) -> None:
    ui = open_page()
    ui.wait_for_options()
    running_app.reset_backend()
    text = f"Hello from the browser ({how})"

    result = ui.evaluate(
        "([text, how]) => window.__chatkitStandIn.createThread(text, how)", [text, how]
    )

    assert result["status"] == 200
    assert result["contentType"].startswith("text/event-stream")
    events = result["events"]
    kinds = [event["data"]["type"] for event in events]
    assert kinds[0] == "thread.created"
    assert kinds[-1] == "thread.item.done"
    deltas = [
        e["data"]["update"]["delta"]
        for e in events
        if e["data"]["type"] == "thread.item.updated"
        and e["data"]["update"]["type"] == "assistant_message.content_part.text_delta"
    ]
    assert "".join(deltas) == "Hello from the test backend."

    record = only_record(running_app)
    assert record["path"] == BACKEND_PREFIX + "/chatkit"
    assert record["op"] == "threads.create"
    # Events reach the page as the backend sends them: the backend sleeps 0.2 s between
    # its five deltas, so the first arrives about a second before the last is written.
    assert events[0]["at"] / 1000 < record["event_timestamps"][-1] - 0.5

    headers = record["headers"]
    assert headers["authorization"] == f"Bearer {harness.make_jwt(CLAIMS)}"
    assert headers["x-page-url"] == ui.page.url
    assert ui.page.url == running_app.url + PAGE_PATH
    assert headers["content-type"].startswith("application/json")
    assert record["json"]["params"]["input"]["content"] == [{"type": "input_text", "text": text}]
    metadata = record["input_metadata"]
    assert metadata["userId"] == CLAIMS["sub"]
    assert metadata["userInfo"] == {
        "id": CLAIMS["sub"],
        "name": CLAIMS["name"],
        "email": CLAIMS["email"],
    }
    assert metadata["pageContext"] == {
        "url": ui.page.url,
        "path": "/",
        "title": PROJECT_TITLE,
    }
    assert ui.page.title() == PROJECT_TITLE

    sent = sent_fetch(ui, "/api/chatkit")
    assert sent["credentials"] == "same-origin"
    assert sent["bodyType"] == "String"
    ui.assert_clean()


def expected_multipart(
    boundary: str, fields: list[tuple[str, str | None, str | None, bytes]]
) -> bytes:
    """The body Chromium writes for a FormData: (name, filename, content type, value)."""
    out = b""
    for name, filename, content_type, value in fields:
        out += f"--{boundary}\r\n".encode()
        disposition = f'Content-Disposition: form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        out += disposition.encode() + b"\r\n"
        if content_type is not None:
            out += f"Content-Type: {content_type}\r\n".encode()
        out += b"\r\n" + value + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


def test_formdata_upload_arrives_intact_with_the_browsers_boundary(
    open_page, running_app: RunningApp
) -> None:
    ui = open_page()
    ui.wait_for_options()
    running_app.reset_backend()
    data = os.urandom(300_007)

    result = ui.evaluate(
        "([b64, name, type]) => window.__chatkitStandIn.upload(b64, name, type)",
        [base64.b64encode(data).decode(), "random.bin", "application/octet-stream"],
    )

    assert result["status"] == 200, result
    record = only_record(running_app)
    assert record["method"] == "POST"
    assert record["path"] == BACKEND_PREFIX + "/chatkit/files/upload"
    content_type = record["content_type"]
    match = re.fullmatch(r"multipart/form-data; boundary=(\S+)", content_type)
    assert match, content_type
    body = expected_multipart(
        match.group(1),
        [
            ("purpose", None, None, b"browser-test"),
            ("file", "random.bin", "application/octet-stream", data),
        ],
    )
    assert record["size"] == len(body)
    assert record["sha256"] == sha256(body)
    # What the backend echoed is what the page got back through the proxy.
    assert result["json"] == {
        "method": "POST",
        "path": BACKEND_PREFIX + "/chatkit/files/upload",
        "query": "",
        "size": len(body),
        "sha256": sha256(body),
        "content_type": content_type,
    }
    assert record["headers"]["authorization"] == f"Bearer {harness.make_jwt(CLAIMS)}"
    assert record["headers"]["x-page-url"] == ui.page.url

    # The wrapper left the body a FormData and set no Content-Type of its own, so the
    # browser wrote the multipart header with the boundary it used.
    sent = sent_fetch(ui, "/api/chatkit/files/upload")
    assert sent["bodyType"] == "FormData"
    assert sent["credentials"] == "same-origin"
    assert "content-type" not in dict(sent["headers"])
    ui.assert_clean()


def test_request_object_with_binary_body_arrives_intact(open_page, running_app: RunningApp) -> None:
    ui = open_page()
    ui.wait_for_options()
    running_app.reset_backend()
    data = os.urandom(65_537)

    result = ui.evaluate(
        "(request) => window.__chatkitStandIn.sendRequest(request)",
        {
            "url": "/api/chatkit/upload/att_browser?via=request",
            "method": "PUT",
            "headers": {
                "Content-Type": "application/octet-stream",
                "Accept": "application/json",
                "Accept-Language": "de-CH",
            },
            "base64": base64.b64encode(data).decode(),
        },
    )

    assert result["status"] == 200, result
    record = only_record(running_app)
    assert record["method"] == "PUT"
    assert record["path"] == BACKEND_PREFIX + "/chatkit/upload/att_browser"
    assert record["query"] == "via=request"
    assert record["size"] == len(data)
    assert record["sha256"] == sha256(data)
    headers = record["headers"]
    assert headers["content-type"] == "application/octet-stream"
    assert headers["accept"] == "application/json"
    assert headers["accept-language"] == "de-CH"
    assert headers["authorization"] == f"Bearer {harness.make_jwt(CLAIMS)}"
    assert headers["x-page-url"] == ui.page.url
    assert result["json"]["sha256"] == sha256(data)
    ui.assert_clean()


@pytest.mark.parametrize("how", ["method", "detached"])
def test_request_object_with_user_message_keeps_its_body_and_gains_context(
    open_page, running_app: RunningApp, how: str
) -> None:
    ui = open_page()
    ui.wait_for_options()
    running_app.reset_backend()
    payload = {
        "type": "threads.create",
        "params": {
            "input": {
                **harness.user_message("Sent as a Request"),
                "metadata": {"source": "request-test"},
            }
        },
    }

    result = ui.evaluate(
        "([request, how]) => window.__chatkitStandIn.sendRequest(request, how)",
        [
            {
                "url": "/api/chatkit",
                "method": "POST",
                "headers": {"Content-Type": "application/json", "Accept": "text/event-stream"},
                "text": json.dumps(payload),
            },
            how,
        ],
    )

    assert result["status"] == 200, result
    assert [e["data"]["type"] for e in result["events"]][-1] == "thread.item.done"
    record = only_record(running_app)
    assert record["method"] == "POST"
    assert record["op"] == "threads.create"
    assert record["headers"]["accept"] == "text/event-stream"
    assert record["headers"]["content-type"] == "application/json"
    assert record["headers"]["x-page-url"] == ui.page.url
    sent_input = record["json"]["params"]["input"]
    assert sent_input["content"] == payload["params"]["input"]["content"]
    assert sent_input["metadata"]["source"] == "request-test"  # kept
    assert sent_input["metadata"]["userId"] == CLAIMS["sub"]
    assert sent_input["metadata"]["pageContext"]["url"] == ui.page.url
    ui.assert_clean()


def test_blocked_script_shows_an_alert_naming_the_script_url(open_page, tmp_path: Path) -> None:
    ui = open_page(script="abort")

    alert = ui.page.locator("main").get_by_role("alert")
    remaining = ALERT_DEADLINE_S - (time.monotonic() - ui.navigated_at)
    expect(alert).to_contain_text(SCRIPT_URL, timeout=max(remaining, 0.1) * 1000)
    expect(alert).to_contain_text("The chat could not start")
    assert time.monotonic() - ui.navigated_at < ALERT_DEADLINE_S + 0.5

    assert ui.script_requests == [SCRIPT_URL]
    assert ui.evaluate("() => customElements.get('openai-chatkit') === undefined")
    assert ui.evaluate("() => window.__chatkit === undefined")
    assert ui.page_errors == []
    assert ui.blocked == []
    save_screenshot(ui.page, tmp_path, "script-blocked.png")


def test_signed_out_page_shows_the_sign_in_hint(open_page, tmp_path: Path) -> None:
    ui = open_page(signed_in=False)

    hint = ui.page.get_by_test_id("sign-in-hint")
    expect(hint).to_be_visible()
    expect(hint).to_contain_text("Sign in first")
    expect(hint).to_contain_text(E2E_ANSWERS["cookie_name"])
    assert ui.page.locator("openai-chatkit").count() == 0
    assert ui.evaluate("() => window.__chatkit.options === null")  # stand-in ran, unused
    assert ui.page.locator("main").get_by_role("alert").count() == 0
    ui.assert_clean()
    save_screenshot(ui.page, tmp_path, "signed-out.png")
