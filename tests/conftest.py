"""Session fixtures: one node_modules, one ChatKit backend, one built and started app."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests import harness

# The e2e app is rendered pointing at a dead address, then started with
# CHATKIT_UPSTREAM_URL aimed at the live backend: that proves the variable is read at
# run time, after the build. The backend mounts ChatKit under a path prefix, which the
# proxy must keep.
E2E_ANSWERS = {
    "project_name": "E2E Chat",
    "cookie_name": "app.id-token",
    "upstream_url": "http://127.0.0.1:9/unused",
    "upstream_path": "/chatkit",
    "custom_headers": [
        {"name": "X-Page-URL", "source": "client"},
        {"name": "X-User-ID", "source": "claim", "value": "sub"},
        {"name": "X-Tenant", "source": "claim", "value": "tenant"},
        {"name": "X-Api-Key", "source": "env", "value": "CHATKIT_BACKEND_API_KEY"},
        {"name": "X-Client", "source": "static", "value": 'web "e2e" \\ v1'},
    ],
}
BACKEND_PREFIX = "/prefix"
BACKEND_API_KEY = "backend-key-from-env"
# Short enough for tests/test_e2e_proxy.py to see a 504 quickly, long enough for every
# other backend answer; streams are not cut by it.
UPSTREAM_TIMEOUT_MS = 2000
# A second origin, besides the app's own, allowed to call the proxy with the cookie.
ALLOWED_ORIGIN = "https://allowed.example"


@pytest.fixture(scope="session")
def node_workspace() -> Path:
    """A directory whose node_modules holds the rendered app's pinned dependencies."""
    return harness.ensure_node_modules()


@pytest.fixture(scope="session")
def renders_dir(node_workspace: Path) -> Path:
    path = node_workspace / "renders"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="session")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[harness.Server]:
    server = harness.start_backend(
        BACKEND_PREFIX + E2E_ANSWERS["upstream_path"], tmp_path_factory.mktemp("backend")
    )
    yield server
    server.stop()


@dataclass
class RunningApp:
    app_dir: Path
    server: harness.Server
    backend: harness.Server
    cookie_name: str

    @property
    def url(self) -> str:
        return self.server.base_url

    def backend_requests(self) -> list[dict]:
        with httpx.Client(trust_env=False) as client:
            return client.get(self.backend.base_url + "/__test__/requests").json()

    def reset_backend(self) -> None:
        with httpx.Client(trust_env=False) as client:
            client.post(self.backend.base_url + "/__test__/reset").raise_for_status()


@pytest.fixture(scope="session")
def running_app(
    node_workspace: Path,
    renders_dir: Path,
    backend: harness.Server,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningApp]:
    """The e2e render, built with `next build` and served by `next start`."""
    app_dir = harness.render(renders_dir / "e2e", E2E_ANSWERS)
    harness.build_app(app_dir, node_workspace)
    server = harness.start_app(
        app_dir,
        node_workspace,
        tmp_path_factory.mktemp("next"),
        CHATKIT_UPSTREAM_URL=backend.base_url + BACKEND_PREFIX,
        CHATKIT_BACKEND_API_KEY=BACKEND_API_KEY,
        CHATKIT_UPSTREAM_TIMEOUT_MS=str(UPSTREAM_TIMEOUT_MS),
        CHATKIT_ALLOWED_ORIGINS=ALLOWED_ORIGIN,
    )
    yield RunningApp(app_dir, server, backend, E2E_ANSWERS["cookie_name"])
    server.stop()
