"""Answer sets that, together, use every header source and the oddest values accepted."""

from __future__ import annotations

from typing import Any

ODD_TEXT = 'He said "hi" \\ `tick` ${x} {{ y }} </script> it\'s <b>&amp;</b>'

ANSWER_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "every-source": {
        "project_name": "Acme Support",
        "cookie_name": "__Host-session",
        "upstream_url": "https://api.example.com/v1/",
        "upstream_path": "/chatkit",
        "custom_headers": [
            {"name": "X-Page-URL", "source": "client"},
            {"name": "Accept-Language-Override", "source": "client"},
            {"name": "X-User-ID", "source": "claim", "value": "sub"},
            {"name": "X-Org", "source": "claim", "value": "https://example.com/org"},
            {"name": "X-Api-Key", "source": "env", "value": "CHATKIT_API_KEY"},
            {"name": "X-Client", "source": "static", "value": "web"},
        ],
    },
    "odd-values": {
        "project_name": ODD_TEXT,
        "package_name": "odd.values_app-1",
        "cookie_name": "a!#$%&'*+-.^_`|~z",
        "upstream_url": "http://[::1]:8443/base/path",
        "upstream_path": "/chat/kit-v2",
        "custom_headers": [
            {"name": "X-Odd", "source": "static", "value": ODD_TEXT},
            {"name": "X-Single'Quote", "source": "static", "value": "it's"},
            {"name": "X-Claim", "source": "claim", "value": 'weird "claim" name\\'},
            {
                "name": "X-A-Header-Name-Long-Enough-To-Push-The-Line-Past-Eighty-Columns",
                "source": "static",
                "value": "a value long enough that prettier must break the line after the colon",
            },
        ],
        "chatkit_script_url": "https://cdn.example.com/chatkit.js?v=1&x=%22",
    },
    "no-headers": {
        "project_name": "Bare",
        "cookie_name": "auth.token",
        "upstream_url": "http://localhost:8000",
        "upstream_path": "/api/chatkit",
        "custom_headers": [],
    },
}

DEFAULTS: dict[str, Any] = {
    "project_name": "ChatKit App",
    "cookie_name": "id_token",
    "upstream_url": "http://localhost:8000",
    "upstream_path": "/chatkit",
    "chatkit_script_url": "https://cdn.platform.openai.com/deployments/chatkit/chatkit.js",
    "custom_headers": [
        {"name": "X-Page-URL", "source": "client"},
        {"name": "X-User-ID", "source": "claim", "value": "sub"},
    ],
}


def expected_config(answers: dict[str, Any]) -> dict[str, Any]:
    """What lib/chatkit/config.ts must export for these answers (defaults filled in)."""
    merged = DEFAULTS | answers
    return {
        "projectName": merged["project_name"],
        "cookieName": merged["cookie_name"],
        "defaultUpstreamUrl": merged["upstream_url"],
        "upstreamPath": merged["upstream_path"],
        "chatkitScriptUrl": merged["chatkit_script_url"],
        "forwardedHeaders": merged["custom_headers"],
    }
