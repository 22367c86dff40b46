"""Render an app from the template and show it working, as a new user would see it.

`bash .ci/demo` runs this: copier copy, npm install, npm run build, npm start, then a
signed-in chat request streams through the app's proxy from a scripted ChatKit backend
(the one the tests use; it answers without calling any model).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import httpx

from tests import harness

DEFAULT_DEST = harness.REPO_ROOT / ".demo" / "my-chatkit-app"


def step(message: str) -> None:
    print(f"\n==> {message}", flush=True)


def npm(app_dir: Path, *args: str) -> None:
    result = harness.run(["npm", *args], app_dir)
    if result.returncode != 0:
        sys.exit(f"demo: npm {' '.join(args)} failed:\n{harness.describe(result)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=DEFAULT_DEST, help="where to render")
    parser.add_argument(
        "--serve", action="store_true", help="keep the app and backend running until Ctrl-C"
    )
    args = parser.parse_args(argv)
    logs = args.dest.parent / "logs"

    step("Starting the scripted ChatKit backend")
    backend = harness.start_backend("/chatkit", logs)
    app = None
    try:
        print(f"backend: {backend.base_url}/chatkit")

        step(f"copier copy {harness.REPO_ROOT} {args.dest}")
        harness.render(args.dest, {"upstream_url": backend.base_url})
        print("rendered:", ", ".join(sorted(p.name for p in args.dest.iterdir())))

        step("npm install")
        npm(args.dest, "install", "--no-audit", "--no-fund", "--loglevel=error")
        step("npm run build")
        npm(args.dest, "run", "build")

        step("npm start")
        port = harness.free_port()
        app = harness.start_server(
            ["npm", "start", "--", "--hostname", harness.LOOPBACK, "--port", str(port)],
            cwd=args.dest,
            base_url=f"http://{harness.LOOPBACK}:{port}",
            ready_path="/",
            log_path=logs / "next.log",
            name="npm start",
        )
        print(f"app: {app.base_url}")
        show_proxy(app.base_url, backend.base_url)

        if args.serve:
            token = harness.make_jwt({"sub": "demo-user", "name": "Demo User"})
            step("Serving; press Ctrl-C to stop")
            print(f"Open {app.base_url} with the cookie  id_token={token}")
            print("(in the browser's dev tools, Application > Cookies)")
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        if app is not None:
            app.stop()
        backend.stop()
    return 0


def show_proxy(app_url: str, backend_url: str) -> None:
    payload = {"type": "threads.create", "params": {"input": harness.user_message("Hi!")}}

    step("POST /api/chatkit without the cookie")
    with httpx.Client(trust_env=False, timeout=30) as client:
        response = client.post(app_url + "/api/chatkit", json=payload)
    print(response.status_code, response.text)

    step("POST /api/chatkit with the id_token cookie: the reply streams as it is written")
    token = harness.make_jwt({"sub": "demo-user", "name": "Demo User"})
    started = time.monotonic()
    with httpx.Client(trust_env=False, timeout=30, cookies={"id_token": token}) as client:
        with client.stream("POST", app_url + "/api/chatkit", json=payload) as response:
            print(response.status_code, response.headers["content-type"])
            for event in harness.stream_events(response):
                update = event.data.get("update", {})
                delta = update.get("delta", "") if isinstance(update, dict) else ""
                elapsed = time.monotonic() - started
                shown = f"{event.data['type']:<22} {delta!r}" if delta else event.data["type"]
                print(f"  +{elapsed:5.2f}s  {shown}")

    with httpx.Client(trust_env=False) as client:
        records = client.get(backend_url + "/__test__/requests").json()
    step("What the backend received")
    for record in records:
        auth = record["headers"].get("authorization", "")
        print(
            f"  {record['op']}: Authorization: {auth[:24]}…  X-User-ID: "
            f"{record['headers'].get('x-user-id')}"
        )


if __name__ == "__main__":
    raise SystemExit(main())
