"""Render the template and run what it renders: shared by the test suite and the demo.

Everything here starts real processes (copier, npm, next, the scripted ChatKit backend) on
127.0.0.1 and stops exactly what it started.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from copier import run_copy

REPO_ROOT = Path(__file__).resolve().parent.parent
WORKSPACE = Path(os.environ.get("CHATKIT_TEST_WORKSPACE", REPO_ROOT / ".test-workspace"))
LOOPBACK = "127.0.0.1"

# Next.js would otherwise try to reach its telemetry host, which this machine cannot.
NODE_ENV_DEFAULTS = {"NEXT_TELEMETRY_DISABLED": "1", "CI": "1"}


def render(dest: Path, answers: Mapping[str, Any] | None = None) -> Path:
    """Render the template's working tree (uncommitted edits included) into a fresh `dest`."""
    if dest.exists():
        shutil.rmtree(dest)
    run_copy(
        str(REPO_ROOT),
        str(dest),
        data=dict(answers or {}),
        defaults=True,
        unsafe=False,
        vcs_ref="HEAD",
        quiet=True,
    )
    return dest


def node_env(**extra: str) -> dict[str, str]:
    """The environment for npm and next: the caller's, without its proxies, plus ours."""
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env.update(NODE_ENV_DEFAULTS)
    env.update(extra)
    return env


def run(cmd: list[str], cwd: Path, **extra_env: str) -> subprocess.CompletedProcess[str]:
    """Run a command to completion, capturing its output for the assertion message."""
    return subprocess.run(
        cmd, cwd=cwd, env=node_env(**extra_env), capture_output=True, text=True, check=False
    )


def describe(result: subprocess.CompletedProcess[str]) -> str:
    """A failed command's output, for an assertion message."""
    return f"$ {' '.join(result.args)}\nexit {result.returncode}\n{result.stdout}\n{result.stderr}"


def ensure_node_modules(workspace: Path = WORKSPACE) -> Path:
    """Install the rendered app's dependencies once into `workspace`; renders go below it.

    Node resolves packages by walking up from each file, so every render placed under
    `workspace/renders/` shares this one node_modules. The install is redone only when the
    template's dependencies change.
    """
    workspace.mkdir(parents=True, exist_ok=True)
    probe = render(workspace / "renders" / "_dependencies")
    manifest = json.loads((probe / "package.json").read_text())
    shutil.rmtree(probe)
    wanted = {
        "name": "chatkit-template-test-workspace",
        "private": True,
        "dependencies": manifest["dependencies"],
        "devDependencies": manifest["devDependencies"],
    }
    text = json.dumps(wanted, indent=2, sort_keys=True) + "\n"
    digest = hashlib.sha256(text.encode()).hexdigest()
    stamp = workspace / "node_modules" / ".template-deps-sha256"
    if stamp.exists() and stamp.read_text() == digest:
        return workspace

    (workspace / "package.json").write_text(text)
    result = run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"], workspace)
    if result.returncode != 0:
        raise RuntimeError(f"npm install failed in {workspace}:\n{describe(result)}")
    stamp.write_text(digest)
    return workspace


def bin_path(workspace: Path, name: str) -> str:
    return str(workspace / "node_modules" / ".bin" / name)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """A process serving HTTP on 127.0.0.1, stopped (with its children) by `stop`."""

    process: subprocess.Popen[str]
    base_url: str
    log_path: Path
    name: str = "server"
    _stopped: bool = field(default=False, repr=False)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


def start_server(
    cmd: list[str],
    cwd: Path,
    base_url: str,
    ready_path: str,
    log_path: Path,
    name: str,
    timeout: float = 60.0,
    **extra_env: str,
) -> Server:
    """Start `cmd` in its own process group and wait until `ready_path` answers."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = log_path.open("w")
    process = subprocess.Popen(
        cmd,
        cwd=cwd,
        env=node_env(**extra_env),
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    server = Server(process, base_url, log_path, name)
    deadline = time.monotonic() + timeout
    with httpx.Client(trust_env=False, timeout=2.0) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}:\n{server.log()}")
            with contextlib.suppress(httpx.HTTPError):
                if client.get(base_url + ready_path).status_code < 500:
                    return server
            time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"{name} did not answer {ready_path} within {timeout} s:\n{server.log()}")


def start_backend(chatkit_path: str, log_dir: Path, delta_delay: float = 0.2) -> Server:
    """The scripted ChatKit backend (tests/backend) on a free loopback port."""
    port = free_port()
    cmd = [sys.executable, "-m", "tests.backend.server", "--host", LOOPBACK, "--port", str(port)]
    return start_server(
        [*cmd, "--path", chatkit_path],
        cwd=REPO_ROOT,
        base_url=f"http://{LOOPBACK}:{port}",
        ready_path="/healthz",
        log_path=log_dir / "backend.log",
        name="ChatKit backend",
        CHATKIT_TEST_DELTA_DELAY=str(delta_delay),
    )


def build_app(app_dir: Path, workspace: Path) -> None:
    result = run([bin_path(workspace, "next"), "build"], app_dir)
    if result.returncode != 0:
        raise RuntimeError(f"next build failed:\n{describe(result)}")


def start_app(app_dir: Path, workspace: Path, log_dir: Path, **env: str) -> Server:
    """`next start` on a free loopback port, with the given server environment."""
    port = free_port()
    return start_server(
        [bin_path(workspace, "next"), "start", "--hostname", LOOPBACK, "--port", str(port)],
        cwd=app_dir,
        base_url=f"http://{LOOPBACK}:{port}",
        ready_path="/",
        log_path=log_dir / "next.log",
        name="next start",
        **env,
    )


def make_jwt(claims: Mapping[str, Any]) -> str:
    """An unsigned-looking JWT: the app only reads the payload; the backend would verify."""

    def segment(data: Mapping[str, Any]) -> str:
        raw = json.dumps(data, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return f"{segment({'alg': 'HS256', 'typ': 'JWT'})}.{segment(claims)}.c2lnbmF0dXJl"


def user_message(text: str) -> dict[str, Any]:
    """The `input` of a ChatKit request that sends a user message."""
    return {
        "content": [{"type": "input_text", "text": text}],
        "attachments": [],
        "inference_options": {},
    }


@dataclass
class SseEvent:
    received_at: float
    data: dict[str, Any]


def stream_events(response: httpx.Response) -> Iterator[SseEvent]:
    """Parse an SSE response as it arrives, stamping each event with its arrival time."""
    buffer = ""
    for chunk in response.iter_text():
        buffer += chunk
        while "\n\n" in buffer:
            block, buffer = buffer.split("\n\n", 1)
            data = "\n".join(
                line[5:].lstrip() for line in block.splitlines() if line.startswith("data:")
            )
            if data:
                yield SseEvent(time.time(), json.loads(data))
