"""Each question rejects what cannot work, by name and with an example, writing nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from copier import run_copy

from tests.harness import REPO_ROOT


def copy(dest: Path, answers: dict[str, Any]) -> None:
    run_copy(str(REPO_ROOT), str(dest), data=answers, defaults=True, vcs_ref="HEAD", quiet=True)


REJECTED = [
    ("project_name", "   "),
    ("project_name", "two\nlines"),
    ("package_name", "Has Capitals"),
    ("package_name", "-leading-dash"),
    ("cookie_name", ""),
    ("cookie_name", "session id"),
    ("cookie_name", "a;b"),
    ("cookie_name", "a=b"),
    ("cookie_name", "a,b"),
    ("cookie_name", "jeton-café"),
    ("upstream_url", "localhost:8000"),
    ("upstream_url", "ftp://example.com"),
    ("upstream_url", "http://"),
    ("upstream_url", "https://example.com/#top"),
    ("upstream_url", "https://example.com/a b"),
    ("upstream_url", "https://example.com/?q=1"),
    ("upstream_path", "chatkit"),
    ("upstream_path", "/chat kit"),
    ("upstream_path", "/a/../b"),
    ("upstream_path", "/a//b"),
    ("upstream_path", "/chatkit?x=1"),
    ("upstream_path", "/9%9%"),
    ("upstream_url", "http://api.example.com/a%zz"),
    ("custom_headers", "X-Page-URL"),
    ("custom_headers", {"name": "X-A", "source": "client"}),
    ("custom_headers", [{"name": "X A", "source": "client"}]),
    ("custom_headers", [{"name": "Authorization", "source": "static", "value": "x"}]),
    ("custom_headers", [{"name": "proxy-foo", "source": "client"}]),
    ("custom_headers", [{"name": "Cookie", "source": "client"}]),
    ("custom_headers", [{"name": "host", "source": "static", "value": "x"}]),
    ("custom_headers", [{"name": "Content-Length", "source": "static", "value": "1"}]),
    ("custom_headers", [{"name": "Connection", "source": "client"}]),
    ("custom_headers", [{"name": "Transfer-Encoding", "source": "client"}]),
    ("custom_headers", [{"name": "Keep-Alive", "source": "client"}]),
    ("custom_headers", [{"name": "X-A", "source": "static", "value": "a\x00b"}]),
    ("custom_headers", [{"name": "X-A", "source": "static", "value": " padded"}]),
    ("custom_headers", [{"name": "X-A", "source": "env", "value": "NEXT_PUBLIC_KEY"}]),
    ("custom_headers", [{"name": "X-A", "source": "client", "value": "x"}]),
    ("custom_headers", ["X-A"]),
    ("custom_headers", None),
    ("custom_headers", [{"name": "X-A", "source": "client"}, {"name": "x-a", "source": "client"}]),
    ("custom_headers", [{"name": "X-A", "source": "query"}]),
    ("custom_headers", [{"name": "X-A", "source": "claim"}]),
    ("custom_headers", [{"name": "X-A", "source": "static", "value": 42}]),
    ("custom_headers", [{"name": "X-A", "source": "env", "value": "1BAD"}]),
    ("custom_headers", [{"name": "X-A", "source": "static", "value": "a\r\nX-B: c"}]),
    ("custom_headers", [{"name": "X-A", "source": "static", "value": "日本"}]),
    ("custom_headers", [{"name": "X-A", "source": "client", "extra": 1}]),
    ("chatkit_script_url", "//cdn.example.com/chatkit.js"),
    ("chatkit_script_url", "https://cdn.example.com/chat kit.js"),
]


@pytest.mark.parametrize(("question", "value"), REJECTED)
def test_invalid_answer_is_rejected_by_name_with_an_example(
    tmp_path: Path, question: str, value: Any
) -> None:
    dest = tmp_path / "app"

    with pytest.raises(ValueError) as raised:
        copy(dest, {question: value})

    message = str(raised.value)
    assert f"Validation error for question '{question}'" in message
    assert "Example" in message
    assert not dest.exists()


ACCEPTED = [
    ("cookie_name", "__Host-session"),
    ("cookie_name", "__Secure-auth"),
    ("cookie_name", "auth.token-v2"),
    ("upstream_url", "http://[::1]:8000"),
    ("upstream_url", "https://api.example.com/v1/"),
    ("upstream_url", "http://backend:8000/base/path"),
    ("upstream_path", "/api/v2/chatkit"),
    ("upstream_path", "/chat%20kit"),
    ("custom_headers", []),
    ("custom_headers", [{"name": "X-Api-Key", "source": "env", "value": "CHATKIT_API_KEY"}]),
    ("custom_headers", [{"name": "X-Latin", "source": "static", "value": "café"}]),
    ("chatkit_script_url", "https://cdn.example.com/chatkit.js?v=2"),
]


@pytest.mark.parametrize(("question", "value"), ACCEPTED)
def test_valid_answer_is_accepted(tmp_path: Path, question: str, value: Any) -> None:
    dest = tmp_path / "app"

    copy(dest, {question: value})

    assert (dest / "lib" / "chatkit" / "config.ts").is_file()
