"""Benchmark the rendered app's /api/chatkit proxy against the backend and a no-op route.

Not a test: it prints measured figures, each target, and whether this run met it; it
exits 0 whether or not a target was met (non-zero only when something could not be
measured). `bash .ci/bench` installs wrk and runs it; from the repository root:

    .venv/bin/python -m tests.benchmark [--duration 10] [--connections 16] [--json out.json]

What it does, all on 127.0.0.1:
1. renders the template into its own workspace (/tmp/chatkit-bench-workspace unless
   --workspace says otherwise), adds a no-op route handler `app/api/noop/route.ts` (the
   framework's floor), runs `next build`, starts the scripted backend (tests/backend) and
   `next start` with CHATKIT_UPSTREAM_URL aimed at it;
2. wrk, one target after another at the same threads/connections/duration, in rounds, all
   on one `next start` whose backend URL leads to the backend's cheap catch-all: a small
   JSON POST (a) straight to that backend route, (b) through the proxy's `/api/chatkit`
   with the token cookie, as ChatKit sends its requests, (c) to the no-op route, (d)
   through the proxy to a path below `/api/chatkit`, (e) to a no-op catch-all route
   (`app/api/noop/[...path]`, the shape of the subpath route) at the same path; requests/s,
   p50, p99, and the CPU time each process spent per request (from /proc);
3. SSE time to first event over sequential requests, on a second `next start` whose
   backend URL ends at the backend's `_test/sse` route, so that the proxy's static route
   `/api/chatkit` (where ChatKit sends its streaming requests) is what is timed; each
   path is warmed up with wrk first: direct, through the proxy, and from a no-op SSE
   route (`app/api/noop/sse`, Next's floor), split into legs with the backend's record of
   each request; once back to back (the target's figure) and once with every request
   after 50 ms idle, beside how much slower the machine runs fixed CPU work after such
   a pause, and what a loopback round trip costs on one core and across two;
4. the throughput server's peak RSS (its process tree) during a large PUT through the
   proxy to a path below `/api/chatkit` (the backend hashes it; the sha256 is checked),
   against its RSS before;
5. with --variants, the same throughput and SSE figures for the proxy rebuilt with one
   choice changed at a time (undici or fetch, streamed or buffered bodies), at
   `/api/bench/<variant>/...` of the benchmark's render only;
6. with --profile DIR, a `node --cpu-prof` run of the proxy and the no-op loads, with
   where next start's CPU time went per request, traced through the build's source maps,
   and the difference between them.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import re
import resource
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Self

import httpx

from tests import harness

DEFAULT_WORKSPACE = Path("/tmp/chatkit-bench-workspace")
COOKIE_NAME = "id_token"
CHATKIT_PATH = "/chatkit"
TOKEN = harness.make_jwt({"sub": "bench-user", "name": "Bench Mark"})
# The same small JSON body for every throughput target.
SMALL_BODY = json.dumps(
    {"type": "threads.list", "params": {"limit": 20, "order": "desc"}}, separators=(",", ":")
)
# The path below /api/chatkit for (d) and (e), in the shape of an upload target.
SUBPATH = "/files/bench-file/upload?part=1"
# The backend's SSE route, which the SSE server's backend URL ends at, so that its static
# route /api/chatkit (where ChatKit sends its streaming requests) leads there.
SSE_ROUTE = "/_test/sse"
# Three events, one after another: a stream, not one chunk, with no quiet tail that would
# leave every process idle until the next request.
SSE_QUERY = "?events=3&delay=0&size=128"  # a `seq=` is appended
# The second SSE pass pauses this long before each request. On a VM a core left idle for
# tens of milliseconds runs the next piece of work slower; the benchmark measures by how
# much on fixed CPU work of its own (idle_slowdown), so the pass after pauses shows how
# much of the proxied figure is the machine's.
SSE_PAUSE_S = 0.05
UPLOAD_SUBPATH = "/files/bench.bin"
# Below the backend's ChatKit path, where its catch-all reads the body and answers a short
# JSON summary: the throughput server's backend URL ends with it.
CATCH_ALL_PREFIX = "/bench"

TARGETS = {
    "rps_ratio": 0.9,  # proxy rps / no-op rps, at least
    "sse_added_ms": 3.0,  # median TTFE through the proxy minus direct, at most
    "rss_growth_mib": 64.0,  # peak RSS during the upload minus RSS before, at most
}

NOOP_ROUTE = """\
// Added by tests/benchmark.py to the benchmark's render only: the framework's floor.
export const runtime = "nodejs";
export const dynamic = "force-dynamic";

export function POST(): Response {
  return Response.json({ ok: true });
}
"""

# The framework's floor for time to first event: three events one after another, as the
# backend's _test/sse route sends them with SSE_QUERY.
NOOP_SSE_ROUTE = """\
// Added by tests/benchmark.py to the benchmark's render only: Next's own floor for
// time to first SSE event, with no backend behind it.
export const runtime = "nodejs";
export const dynamic = "force-dynamic";

const encoder = new TextEncoder();

/** Wall-clock milliseconds, to the microsecond, comparable with the client's clock. */
function wallClockMs(): number {
  return performance.timeOrigin + performance.now();
}

export function POST(): Response {
  const entered = wallClockMs();
  let index = 0;
  const stream = new ReadableStream<Uint8Array>({
    pull(controller) {
      controller.enqueue(
        encoder.encode(`data: {"type":"test.event","index":${index}}\\n\\n`),
      );
      index += 1;
      if (index === 3) {
        controller.close();
      }
    },
  });
  return new Response(stream, {
    headers: {
      "content-type": "text/event-stream",
      "cache-control": "no-cache, no-transform",
      "x-bench-timing": `entered=${entered}`,
    },
  });
}
"""

# The same no-op at the proxy's route shape, a catch-all: Next matches it differently.
NOOP_CATCH_ALL_ROUTE = """\
// Added by tests/benchmark.py to the benchmark's render only: the framework's floor for
// a catch-all route, the shape of app/api/chatkit/[...path].
export const runtime = "nodejs";
export const dynamic = "force-dynamic";

export async function POST(
  request: Request,
  context: { params: Promise<{ path: string[] }> },
): Promise<Response> {
  await context.params;
  return Response.json({ ok: true });
}
"""

# With --variants: the proxy's steps rebuilt from lib/chatkit/proxy.ts's exports, with one
# choice changed at a time, served at /api/bench/<variant>/<subpath>.
VARIANT_ROUTE = """\
// Added by tests/benchmark.py --variants to the benchmark's render only, never to the
// template: lib/chatkit/proxy.ts's steps rebuilt from its exports, one choice changed
// at a time, to find where the proxy's time goes. <variant> is one of
//   noop                        no backend: answer {"ok":true} (a catch-all route's floor)
//   readbody                    no backend: read the body, answer {"ok":true}
//   prelude                     no backend: settings, cookie, URL, headers, then {"ok":true}
//   <client>-<reqbody>-<resbody> the whole proxy by other means than proxy.ts's (which
//   calls dispatch() on a keep-alive Agent, reads small bodies whole and feeds the
//   response's web stream from undici's parser), where
//     client:  undici (undici.request on a keep-alive Agent) | fetch (global)
//     reqbody: stream (Readable.fromWeb(request.body)) | buffer (arrayBuffer)
//     resbody: relay (pull-based ReadableStream over undici's Node body)
//              | web (Readable.toWeb, or fetch's own body) | buffer (read it all, then send)
import { Readable } from "node:stream";
import type { ReadableStream as NodeReadableStream } from "node:stream/web";

import { Agent, request as undiciRequest } from "undici";

import {
  buildUpstreamHeaders,
  buildUpstreamUrl,
  encodeSubpath,
  isAllowedOrigin,
  jsonError,
  readTokenCookie,
  toClientResponse,
} from "@/lib/chatkit/proxy";
import { loadProxySettings } from "@/lib/chatkit/settings";

export const runtime = "nodejs";
export const dynamic = "force-dynamic";

const agent = new Agent({ bodyTimeout: 0, keepAliveTimeout: 30_000 });

function relay(body: Readable): ReadableStream<Uint8Array> {
  const chunks = body[Symbol.asyncIterator]();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      const { value, done } = await chunks.next();
      if (done) {
        controller.close();
      } else {
        controller.enqueue(value as Uint8Array);
      }
    },
    cancel() {
      body.destroy();
    },
  });
}

function wallClockMs(): number {
  return performance.timeOrigin + performance.now();
}

export async function POST(
  request: Request,
  context: { params: Promise<{ variant: string; path: string[] }> },
): Promise<Response> {
  const entered = wallClockMs();
  const { variant, path } = await context.params;
  if (variant === "noop") {
    return Response.json({ ok: true });
  }
  if (variant === "readbody") {
    await request.arrayBuffer();
    return Response.json({ ok: true });
  }
  const settings = loadProxySettings(process.env);
  if (!isAllowedOrigin(request, settings.allowedOrigins)) {
    return jsonError(403, "cross-site");
  }
  const token = readTokenCookie(request.headers.get("cookie"), settings.cookieName);
  const subpath = encodeSubpath(path);
  if (token === null || subpath === null) {
    return jsonError(400, "no cookie or bad path");
  }
  const target = buildUpstreamUrl(
    settings.upstreamUrl,
    settings.upstreamPath + subpath,
    new URL(request.url).search,
  );
  const headers = buildUpstreamHeaders(request.headers, token, settings);
  if (variant === "prelude") {
    const n = Object.keys(headers).length;
    return Response.json({ ok: true, target: target.pathname.length, n });
  }
  const [client, requestMode, responseMode] = variant.split("-");
  let sending = 0;
  const body =
    requestMode === "buffer"
      ? Buffer.from(await request.arrayBuffer())
      : (request.body as ReadableStream<Uint8Array>);

  let status: number;
  let statusText: string | undefined;
  let upstreamHeaders: Headers;
  let responseBody: ReadableStream<Uint8Array> | null;
  let buffered: ArrayBuffer | null = null;
  if (client === "fetch") {
    sending = wallClockMs();
    const response = await fetch(target, {
      method: "POST",
      headers,
      body,
      signal: request.signal,
      duplex: "half",
    } as RequestInit);
    status = response.status;
    statusText = response.statusText;
    upstreamHeaders = new Headers(response.headers);
    if (responseMode === "buffer") {
      buffered = await response.arrayBuffer();
      responseBody = null;
    } else {
      responseBody = response.body;
    }
  } else {
    sending = wallClockMs();
    const upstream = await undiciRequest(target, {
      dispatcher: agent,
      method: "POST",
      headers,
      body:
        body instanceof Buffer
          ? body
          : Readable.fromWeb(body as NodeReadableStream<Uint8Array>),
      signal: request.signal,
      headersTimeout: settings.timeoutMs,
      bodyTimeout: 0,
    });
    status = upstream.statusCode;
    statusText = upstream.statusText;
    upstreamHeaders = new Headers();
    for (const [name, value] of Object.entries(upstream.headers)) {
      for (const item of Array.isArray(value) ? value : [value]) {
        if (item !== undefined) {
          upstreamHeaders.append(name, item);
        }
      }
    }
    if (responseMode === "buffer") {
      buffered = await upstream.body.arrayBuffer();
      responseBody = null;
    } else if (responseMode === "web") {
      responseBody = Readable.toWeb(upstream.body) as ReadableStream<Uint8Array>;
    } else {
      responseBody = relay(upstream.body);
    }
  }
  const answered = wallClockMs();
  const response = toClientResponse(
    { status, statusText, headers: upstreamHeaders, body: responseBody },
    "POST",
  );
  response.headers.set(
    "x-bench-timing",
    `entered=${entered};sending=${sending};answered=${answered}`,
  );
  return buffered === null
    ? response
    : new Response(buffered, { status, statusText, headers: response.headers });
}
"""

VARIANTS = (
    "noop",
    "readbody",
    "prelude",
    "undici-stream-relay",
    "undici-buffer-relay",
    "undici-stream-web",
    "undici-buffer-buffer",
    "fetch-stream-web",
    "fetch-buffer-buffer",
)

WRK_SCRIPT = """\
-- Written by tests/benchmark.py: a small JSON POST, with the token cookie.
wrk.method = "POST"
wrk.body = %(body)s
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Cookie"] = %(cookie)s

function done(summary, latency, requests)
  io.write(string.format(
    "BENCH_JSON {\\"requests\\":%%d,\\"duration_us\\":%%d,\\"bytes\\":%%d," ..
    "\\"connect\\":%%d,\\"read\\":%%d,\\"write\\":%%d,\\"status\\":%%d,\\"timeout\\":%%d," ..
    "\\"p50_us\\":%%d,\\"p90_us\\":%%d,\\"p99_us\\":%%d,\\"mean_us\\":%%.1f,\\"max_us\\":%%d}\\n",
    summary.requests, summary.duration, summary.bytes,
    summary.errors.connect, summary.errors.read, summary.errors.write,
    summary.errors.status, summary.errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.mean, latency.max))
end
"""


# --------------------------------------------------------------------------- /proc helpers

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat after the command name (which may hold spaces and parentheses)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def process_tree(root: int) -> list[int]:
    """`root` and all of its descendants, from /proc."""
    children: dict[int, list[int]] = defaultdict(list)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None:
                children[int(fields[1])].append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of the given live processes."""
    total = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None:
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLOCK_TICKS


def machine_busy_seconds() -> float:
    """CPU time all processes on the machine have used (every core), from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    steal_guest = sum(fields[7:])  # steal, guest, guest_nice: not ours to charge
    return (sum(fields) - idle - steal_guest) / CLOCK_TICKS


def rss_kib(pid: int) -> int:
    """VmRSS of one process in KiB (0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def command_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return "?"


class RssSampler:
    """Samples the summed VmRSS of a process tree every `interval` seconds in a thread."""

    def __init__(self, root: int, interval: float) -> None:
        self.root = root
        self.interval = interval
        self.samples: list[tuple[float, int]] = []  # (monotonic time, KiB)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._pids = process_tree(root)

    def _run(self) -> None:
        rescan_at = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= rescan_at:  # a child could appear; rescanning /proc costs more
                self._pids = process_tree(self.root)
                rescan_at = now + 0.5
            self.samples.append((now, sum(rss_kib(pid) for pid in self._pids)))
            self._stop.wait(self.interval)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def between(self, start: float, end: float) -> list[int]:
        return [kib for t, kib in self.samples if start <= t <= end]


# --------------------------------------------------------------------------- statistics


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation between closest ranks."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


# --------------------------------------------------------------------------- wrk


@dataclass
class WrkResult:
    target: str
    url: str
    command: str
    rps: float
    requests: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    errors: dict[str, int]
    # CPU seconds per request spent by each process tree, and by wrk itself.
    cpu_us_per_request: dict[str, float] = field(default_factory=dict)
    # Share of the machine's cores used by processes that are none of ours during the run.
    other_cpu_pct: float = 0.0


def run_wrk(
    target: str,
    url: str,
    script: Path,
    args: argparse.Namespace,
    duration: float,
    cpu_trees: dict[str, int],
) -> WrkResult:
    """One wrk run against `url`; the process trees in `cpu_trees` are charged CPU time."""
    cmd = [
        "wrk",
        f"-t{args.threads}",
        f"-c{args.connections}",
        f"-d{duration:g}s",
        f"--timeout={args.wrk_timeout:g}s",
        "-s",
        str(script),
        url,
    ]
    trees = {name: process_tree(pid) for name, pid in cpu_trees.items()}
    cpu_before = {name: cpu_seconds(pids) for name, pids in trees.items()}
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy_before, started = machine_busy_seconds(), time.monotonic()
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60, check=False)
    busy_after, elapsed = machine_busy_seconds(), time.monotonic() - started
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_after = {name: cpu_seconds(pids) for name, pids in trees.items()}
    match = re.search(r"^BENCH_JSON (\{.*\})$", result.stdout, re.MULTILINE)
    if result.returncode != 0 or match is None:
        raise RuntimeError(
            f"wrk failed (exit {result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    data = json.loads(match.group(1))
    requests = max(int(data["requests"]), 1)
    cpu = {name: (cpu_after[name] - cpu_before[name]) / requests * 1e6 for name in trees}
    wrk_cpu = (children_after.ru_utime + children_after.ru_stime) - (
        children_before.ru_utime + children_before.ru_stime
    )
    cpu["wrk"] = wrk_cpu / requests * 1e6
    ours = sum(cpu_after[name] - cpu_before[name] for name in trees) + wrk_cpu
    other = max(busy_after - busy_before - ours, 0.0)
    return WrkResult(
        target=target,
        url=url,
        command=shlex.join(cmd),
        rps=data["requests"] / (data["duration_us"] / 1e6),
        requests=data["requests"],
        p50_ms=data["p50_us"] / 1000,
        p90_ms=data["p90_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        mean_ms=data["mean_us"] / 1000,
        max_ms=data["max_us"] / 1000,
        errors={k: int(data[k]) for k in ("connect", "read", "write", "status", "timeout")},
        cpu_us_per_request=cpu,
        other_cpu_pct=other / (elapsed * len(os.sched_getaffinity(0))) * 100,
    )


def median_result(runs: list[WrkResult]) -> WrkResult:
    """Per-figure median over rounds (each figure on its own)."""
    first = runs[0]
    if len(runs) == 1:
        return first

    def med(get: Callable[[WrkResult], float]) -> float:
        return statistics.median(get(run) for run in runs)

    return WrkResult(
        target=first.target,
        url=first.url,
        command=first.command,
        rps=med(lambda r: r.rps),
        requests=int(med(lambda r: r.requests)),
        p50_ms=med(lambda r: r.p50_ms),
        p90_ms=med(lambda r: r.p90_ms),
        p99_ms=med(lambda r: r.p99_ms),
        mean_ms=med(lambda r: r.mean_ms),
        max_ms=max(run.max_ms for run in runs),
        errors={k: sum(run.errors[k] for run in runs) for k in first.errors},
        cpu_us_per_request={
            k: med(lambda r, k=k: r.cpu_us_per_request[k]) for k in first.cpu_us_per_request
        },
        other_cpu_pct=max(run.other_cpu_pct for run in runs),
    )


# --------------------------------------------------------------------------- SSE


def time_to_first_event(
    client: httpx.Client, url: str
) -> tuple[float, float, float, dict[str, float]]:
    """(wall-clock start, wall-clock first event, seconds between by the monotonic clock,
    the route's own `x-bench-timing` wall-clock stamps in seconds, if it sent any).

    Timed from just before the request is sent to holding the first complete `data:`
    event; the rest of the stream is read so the connection is reused, as a browser's is.
    """
    started_wall, started = time.time(), time.perf_counter()
    first: float | None = None
    first_wall = 0.0
    with client.stream(
        "POST", url, content=SMALL_BODY, headers={"content-type": "application/json"}
    ) as response:
        if response.status_code != 200:
            raise RuntimeError(f"SSE {url} answered {response.status_code}")
        timing = {
            key: float(value) / 1000
            for key, _, value in (
                part.partition("=")
                for part in response.headers.get("x-bench-timing", "").split(";")
                if part
            )
        }
        buffer = b""
        for chunk in response.iter_raw():
            if first is None:
                buffer += chunk
                while b"\n\n" in buffer:
                    block, buffer = buffer.split(b"\n\n", 1)
                    if any(line.startswith(b"data:") for line in block.splitlines()):
                        first, first_wall = time.perf_counter(), time.time()
                        break
    if first is None:
        raise RuntimeError(f"SSE {url} ended without a data event")
    return started_wall, first_wall, first - started, timing


def _summary(values: list[float]) -> dict[str, float]:
    return {
        "median_ms": statistics.median(values),
        "p90_ms": percentile(values, 90),
        "min_ms": min(values),
        "max_ms": max(values),
    }


# The legs of one SSE request's time to first event, each from two wall-clock stamps:
# the client's (start, first event), the route's x-bench-timing (entered, sending), and the
# backend's record (arrived, first event sent).
SSE_LEGS = {
    "to_handler_ms": ("start", "entered"),
    "handler_to_send_ms": ("entered", "sending"),
    "send_to_backend_ms": ("sending", "arrived"),
    "to_backend_ms": ("start", "arrived"),
    "in_backend_ms": ("arrived", "sent"),
    "backend_to_client_ms": ("sent", "first"),
    "handler_to_client_ms": ("entered", "first"),
}


def measure_sse(
    urls: dict[str, str],
    count: int,
    warmup: int,
    backend_url: str,
    *,
    pause_s: float = 0.0,
    tag: str = "",
) -> dict[str, Any]:
    """Sequential requests to each URL in turn, each URL on its own kept-alive client,
    each request after `pause_s` seconds of doing nothing.

    Every request carries `seq=<tag>p<path number>n<request number>` in its query, so the
    backend's record of it (arrival, first event sent) and the route's own stamps split its
    time to first event into legs (SSE_LEGS). All clocks are this machine's wall clock.
    """
    clients = {
        name: httpx.Client(trust_env=False, timeout=30.0, cookies={COOKIE_NAME: TOKEN})
        for name in urls
    }
    samples: dict[str, list[float]] = {name: [] for name in urls}
    stamps: dict[str, tuple[str, dict[str, float]]] = {}  # seq -> (path name, stamps)
    try:
        for index in range(warmup + count):
            for number, (name, url) in enumerate(urls.items()):
                seq = f"{tag}p{number}n{index}"
                if pause_s > 0:
                    time.sleep(pause_s)
                start, first, seconds, timing = time_to_first_event(
                    clients[name], f"{url}&seq={seq}"
                )
                if index >= warmup:
                    samples[name].append(seconds * 1000)
                    stamps[seq] = (name, {"start": start, "first": first, **timing})
    finally:
        for client in clients.values():
            client.close()
    with httpx.Client(trust_env=False, timeout=30.0) as client:
        records = client.get(backend_url + "/__test__/requests").json()
    for record in records:
        query = dict(
            pair.split("=", 1) for pair in record.get("query", "").split("&") if "=" in pair
        )
        if query.get("seq") in stamps and record.get("events"):
            _, marks = stamps[query["seq"]]
            marks["arrived"] = record["arrived_at"]
            marks["sent"] = record["events"][0]["t"]
    legs: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for name, marks in stamps.values():
        for leg, (begin, end) in SSE_LEGS.items():
            if marks.get(begin) and marks.get(end):
                legs[name][leg].append((marks[end] - marks[begin]) * 1000)
    figures: dict[str, Any] = {"count": count, "pause_ms": pause_s * 1000, "urls": urls}
    for name, values in samples.items():
        figures[name] = {**_summary(values), "samples_ms": [round(v, 3) for v in values]}
        if name in legs:
            figures[name]["legs_median_ms"] = {
                leg: statistics.median(values) for leg, values in legs[name].items()
            }
    figures["added_median_ms"] = figures["proxy"]["median_ms"] - figures["direct"]["median_ms"]
    figures["added_p90_ms"] = figures["proxy"]["p90_ms"] - figures["direct"]["p90_ms"]
    return figures


# --------------------------------------------------------------------------- upload


def measure_upload(app: harness.Server, megabytes: int, interval: float) -> dict[str, Any]:
    """PUT `megabytes` MiB of random bytes through the proxy while sampling next's RSS."""
    data = os.urandom(megabytes * 1024 * 1024)
    digest = hashlib.sha256(data).hexdigest()
    url = app.base_url + "/api/chatkit" + UPLOAD_SUBPATH
    root = app.process.pid
    tree = process_tree(root)
    with (
        RssSampler(root, interval) as sampler,
        httpx.Client(trust_env=False, timeout=120.0, cookies={COOKIE_NAME: TOKEN}) as client,
    ):
        time.sleep(0.5)
        started = time.monotonic()
        response = client.put(
            url, content=data, headers={"content-type": "application/octet-stream"}
        )
        finished = time.monotonic()
        time.sleep(1.0)
    del data
    before = sampler.between(0, started)
    during = sampler.between(started, finished)
    after = sampler.between(finished + 0.5, float("inf"))
    if response.status_code != 200:
        raise RuntimeError(f"upload answered {response.status_code}: {response.text[:500]}")
    summary = response.json()
    before_mib = statistics.median(before) / 1024
    peak_mib = max(during or before) / 1024
    return {
        "megabytes": megabytes,
        "url": url,
        "status": response.status_code,
        "seconds": finished - started,
        "sha256_sent": digest,
        "sha256_backend": summary.get("sha256"),
        "size_backend": summary.get("size"),
        "sha256_match": summary.get("sha256") == digest
        and summary.get("size") == megabytes * 1024 * 1024,
        "rss_before_mib": before_mib,
        "rss_peak_mib": peak_mib,
        "rss_growth_mib": peak_mib - before_mib,
        "rss_after_mib": statistics.median(after) / 1024 if after else None,
        "samples_during": len(during),
        "sample_interval_ms": interval * 1000,
        "processes": [{"pid": pid, "cmd": command_name(pid)} for pid in tree],
    }


# --------------------------------------------------------------------------- CPU profiles


_B64 = {
    c: i for i, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
}


def _vlq_values(segment: str) -> list[int]:
    values, shift, value = [], 0, 0
    for char in segment:
        digit = _B64[char]
        value += (digit & 31) << shift
        if digit & 32:
            shift += 5
        else:
            values.append(-(value >> 1) if value & 1 else value >> 1)
            shift = value = 0
    return values


class SourceMap:
    """Just enough of a version 3 source map to find a generated position's source."""

    def __init__(self, path: Path) -> None:
        data = json.loads(path.read_text())
        self.sources: list[str] = data.get("sources", [])
        self.contents: list[str | None] = data.get("sourcesContent") or []
        self.lines: list[list[tuple[int, int, int, int]]] = []  # (gen col, src, line, col)
        src = src_line = src_col = 0
        for line in data.get("mappings", "").split(";"):
            col, segments = 0, []
            for segment in filter(None, line.split(",")):
                values = _vlq_values(segment)
                col += values[0]
                if len(values) >= 4:
                    src += values[1]
                    src_line += values[2]
                    src_col += values[3]
                    segments.append((col, src, src_line, src_col))
            self.lines.append(segments)

    def lookup(self, line: int, column: int) -> tuple[str, int, str] | None:
        """(source path, 1-based line, that line's text) for a 0-based generated position."""
        if line >= len(self.lines) or not self.lines[line]:
            return None
        segments = self.lines[line]
        low, high = 0, len(segments) - 1
        while low < high:  # the last segment starting at or before `column`
            mid = (low + high + 1) // 2
            if segments[mid][0] <= column:
                low = mid
            else:
                high = mid - 1
        _, src, src_line, _ = segments[low]
        text = ""
        if src < len(self.contents) and self.contents[src]:
            source_lines = self.contents[src].splitlines()
            if src_line < len(source_lines):
                text = source_lines[src_line].strip()
        return self.sources[src], src_line + 1, text


def _source_area(source: str) -> str:
    """A coarse owner for a file path: a package, a part of Next, or the app's own file."""
    source = source.replace("%40", "@")
    match = re.search(r"node_modules/((?:@[^/]+/)?[^/]+)/(.*)", source)
    if match:
        package, rest = match.groups()
        if package == "next":
            parts = rest.split("/")
            if parts[:3] == ["dist", "compiled", "next-server"]:
                return "next: compiled/next-server/" + parts[3].split(".")[0]
            if parts[:2] == ["dist", "compiled"]:
                return "next: compiled/" + parts[2]
            if parts[:2] == ["dist", "esm"]:
                parts = parts[1:]
            return "next: " + "/".join(parts[1:3])
        return package
    match = re.search(r"renders/[^/]+/(.*)", source)
    if match:
        return "app: " + match.group(1)
    return source.rsplit("/", 1)[-1]


def _profile_area(url: str, name: str) -> str:
    """A coarse owner for a profile node: which package or part of the runtime ran it."""
    if not url:
        return name if name.startswith("(") else "(native, builtin)"
    if url.startswith("node:"):
        part = url[5:]
        depth = 3 if part.startswith("internal/deps/") else 2
        return "node: " + "/".join(part.split("/")[:depth])
    return _source_area(url)


def summarise_profile(
    path: Path, top: int, window: tuple[float, float] | None = None
) -> dict[str, Any]:
    """Self time of a .cpuprofile by area and by function, found through source maps.

    Code that Next bundled into .next/server chunks (the app's lib/chatkit, and the undici
    it imports) is traced back to its own file and line with the chunk's source map.
    Percentages are of busy time: idle and "(program)" samples are left out. `window`
    (CLOCK_MONOTONIC seconds, which V8 stamps samples with on Linux) keeps only the
    samples taken under load, leaving start-up and shutdown out.
    """
    profile = json.loads(path.read_text())
    nodes = {node["id"]: node for node in profile["nodes"]}
    deltas = profile.get("timeDeltas", [])
    stamps, now = [], profile.get("startTime", 0)
    for delta in deltas:
        now += delta
        stamps.append(now / 1e6)
    keep = [True] * len(stamps)
    if window is not None:
        keep = [window[0] <= stamp <= window[1] for stamp in stamps]
        if not any(keep):  # another clock after all: say so, and keep everything
            window, keep = None, [True] * len(stamps)
    self_us: dict[int, float] = defaultdict(float)
    for node_id, delta, kept in zip(profile["samples"], deltas[1:] + [0], keep, strict=False):
        if kept:
            self_us[node_id] += delta
    maps: dict[str, SourceMap | None] = {}

    def locate(frame: dict[str, Any]) -> tuple[str, str]:
        """(area, where) of a call frame."""
        url = frame.get("url", "")
        name = frame.get("functionName") or "(anonymous)"
        line, column = frame.get("lineNumber", -1), frame.get("columnNumber", -1)
        if url.startswith("file://") and "/.next/server/" in url:
            chunk = Path(url[len("file://") :])
            if url not in maps:
                map_path = chunk.with_name(chunk.name + ".map")
                maps[url] = SourceMap(map_path) if map_path.exists() else None
            found = maps[url].lookup(line, column) if maps[url] and line >= 0 else None
            if found:
                source, source_line, text = found
                short = re.sub(r"^(\.\./)+", "", source).replace("%40", "@")
                return _source_area(source), f"{short}:{source_line}  {text[:60]}"
        short = url.rsplit("/node_modules/", 1)[-1] if url else ""
        return _profile_area(url, name), f"{short}:{line + 1}" if url else ""

    busy = 0.0
    by_area: dict[str, float] = defaultdict(float)
    by_function: dict[tuple[str, str], float] = defaultdict(float)
    for node_id, spent in self_us.items():
        frame = nodes[node_id]["callFrame"]
        name = frame.get("functionName") or "(anonymous)"
        if name in ("(idle)", "(program)"):
            continue
        busy += spent
        area, where = locate(frame)
        by_area[area] += spent
        by_function[(name, where)] += spent
    total = sum(self_us.values()) or 1.0
    busy = busy or 1.0
    return {
        "file": str(path),
        "load_window_only": window is not None,
        "sampled_ms": total / 1000,
        "busy_ms": busy / 1000,
        "areas": sorted(
            ({"area": k, "pct": v / busy * 100, "us": v} for k, v in by_area.items()),
            key=lambda row: -row["pct"],
        ),
        "functions": sorted(
            (
                {"function": n, "where": w, "pct": v / busy * 100, "us": v}
                for (n, w), v in by_function.items()
            ),
            key=lambda row: -row["pct"],
        )[:top],
    }


def profile_load(
    name: str,
    url: str,
    app_dir: Path,
    workspace: Path,
    log_dir: Path,
    app_env: dict[str, str],
    script: Path,
    args: argparse.Namespace,
    backend: harness.Server,
) -> dict[str, Any]:
    """A fresh `next start` under --cpu-prof, warmed up, loaded with wrk, then stopped."""
    prof_dir = Path(args.profile).resolve() / name
    if prof_dir.exists():
        shutil.rmtree(prof_dir)
    prof_dir.mkdir(parents=True)
    port = harness.free_port()
    next_bin = workspace / "node_modules" / "next" / "dist" / "bin" / "next"
    server = harness.start_server(
        [
            "node",
            "--cpu-prof",
            f"--cpu-prof-dir={prof_dir}",
            str(next_bin),
            "start",
            "--hostname",
            harness.LOOPBACK,
            "--port",
            str(port),
        ],
        cwd=app_dir,
        base_url=f"http://{harness.LOOPBACK}:{port}",
        ready_path="/",
        log_path=log_dir / f"profile-{name}" / "next.log",
        name=f"next start --cpu-prof ({name})",
        **app_env,
    )
    try:
        url = server.base_url + url
        run_wrk(name, url, script, args, args.warmup, {})
        trees = {"next": server.process.pid, "backend": backend.process.pid}
        window_start = time.monotonic()
        result = run_wrk(name, url, script, args, args.duration, trees)
        window = (window_start, time.monotonic())
    finally:
        server.stop()
    profiles = sorted(prof_dir.glob("*.cpuprofile"), key=lambda p: p.stat().st_size)
    if not profiles:
        raise RuntimeError(f"node --cpu-prof wrote no profile into {prof_dir}")
    # The largest profile is the process that served the requests.
    summary = summarise_profile(profiles[-1], args.profile_top, window)
    summary["rps"] = result.rps
    summary["requests"] = result.requests
    for row in summary["areas"] + summary["functions"]:
        row["us_per_request"] = row.pop("us") / max(result.requests, 1)
    summary["cpu_us_per_request"] = result.cpu_us_per_request
    summary["wrk_command"] = result.command
    summary["node_command"] = shlex.join(server.process.args)
    return summary


# --------------------------------------------------------------------------- machine


def version_of(cmd: list[str]) -> str:
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    except OSError as error:
        return f"unavailable ({error})"
    return (result.stdout or result.stderr).strip().splitlines()[0]


def machine_info(workspace: Path) -> dict[str, Any]:
    cpu_model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break

    def package_version(name: str) -> str:
        manifest = workspace / "node_modules" / name / "package.json"
        with contextlib.suppress(OSError, ValueError):
            return str(json.loads(manifest.read_text())["version"])
        return "?"

    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model,
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "kernel": platform.release(),
        "node": version_of(["node", "--version"]),
        "python": platform.python_version(),
        "wrk": version_of(["wrk", "--version"]),
        "next": package_version("next"),
        "undici": package_version("undici"),
    }


def idle_slowdown(pause_s: float, count: int = 40) -> dict[str, float]:
    """How much slower this machine runs fixed CPU work (sha256 of 2 MiB, in this process)
    right after `pause_s` seconds idle than back to back: medians in ms and their ratio."""
    data = os.urandom(2 * 1024 * 1024)

    def work() -> float:
        started = time.perf_counter()
        hashlib.sha256(data).digest()
        return (time.perf_counter() - started) * 1000

    for _ in range(10):
        work()
    back_to_back = statistics.median(work() for _ in range(count))
    after: list[float] = []
    for _ in range(count):
        time.sleep(pause_s)
        after.append(work())
    after_pause = statistics.median(after)
    return {
        "pause_ms": pause_s * 1000,
        "work_back_to_back_ms": back_to_back,
        "work_after_pause_ms": after_pause,
        "slowdown": after_pause / back_to_back,
    }


def wake_round_trip(count: int = 2000) -> dict[str, float] | None:
    """Median round trip, in µs, of one byte over loopback TCP between this process and a
    forked echo: both on one core, then on two. The difference is what it costs to wake
    a process on the other core, as every hop to the backend may; None on one core."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return None
    try:
        return {
            "same_core_us": _echo_round_trip(cores[0], cores[0], count),
            "two_cores_us": _echo_round_trip(cores[0], cores[1], count),
        }
    finally:
        os.sched_setaffinity(0, cores)


def _echo_round_trip(mine: int, theirs: int, count: int) -> float:
    with socket.create_server((harness.LOOPBACK, 0)) as server:
        child = os.fork()
        if child == 0:  # the echo: answers each byte until the other end closes
            try:
                os.sched_setaffinity(0, {theirs})
                server.settimeout(10.0)
                peer, _ = server.accept()
                peer.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                while data := peer.recv(64):
                    peer.sendall(data)
            finally:
                os._exit(0)
        os.sched_setaffinity(0, {mine})
        trips: list[float] = []
        with socket.create_connection(server.getsockname()) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for _ in range(count):
                started = time.perf_counter()
                sock.sendall(b"x")
                sock.recv(64)
                trips.append((time.perf_counter() - started) * 1e6)
        os.waitpid(child, 0)
    return statistics.median(trips[count // 10 :])


# --------------------------------------------------------------------------- report


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def print_sse(sse: dict[str, Any], heading: str) -> None:
    """One SSE pass of the report: each path's time to first event, and its legs."""
    out = print
    out(
        f"SSE time to first event, {heading} ({sse['count']} sequential POSTs per path, "
        "interleaved, kept-alive client each)"
    )
    out(f"  {'path':<34}{'median ms':>11}{'p90 ms':>9}{'min ms':>9}{'max ms':>9}")
    sse_labels = {
        "direct": "backend direct",
        "proxy": "through proxy",
        "next_floor": "Next floor: /api/noop/sse",
    }
    sse_keys = list(sse_labels) + [k for k in sse if k.startswith("variant:")]
    for key in sse_keys:
        if key in sse:
            row = sse[key]
            label = sse_labels.get(key, "  " + key.removeprefix("variant:"))
            out(
                f"  {label:<34}{row['median_ms']:>11.2f}{row['p90_ms']:>9.2f}"
                f"{row['min_ms']:>9.2f}{row['max_ms']:>9.2f}"
            )
    out(
        f"  added by the proxy: median {sse['added_median_ms']:.2f} ms, "
        f"p90 {sse['added_p90_ms']:.2f} ms"
    )
    out("  where it goes: medians of each leg, from wall-clock stamps by the client, the route")
    out("  (x-bench-timing: handler entered, upstream request sent) and the backend's record")
    columns = [
        ("to_handler_ms", "→handler"),
        ("handler_to_send_ms", "→send"),
        ("send_to_backend_ms", "→backend"),
        ("to_backend_ms", "(to backend)"),
        ("in_backend_ms", "in backend"),
        ("backend_to_client_ms", "→client"),
        ("handler_to_client_ms", "(handler→client)"),
    ]
    out(f"  {'path':<30}" + "".join(f"{title:>{max(len(title) + 1, 9)}}" for _, title in columns))
    if any(
        value < 0
        for key in sse_keys
        for value in sse.get(key, {}).get("legs_median_ms", {}).values()
    ):
        out("  WARNING: a leg below zero: the clock was stepped while a server ran, so the")
        out("  route's stamps (Node's time origin plus its monotonic clock) are off")
    for key in sse_keys:
        legs = sse.get(key, {}).get("legs_median_ms")
        label = sse_labels.get(key, "  " + key.removeprefix("variant:"))
        if legs:
            out(
                f"  {label:<30}"
                + "".join(
                    f"{legs[leg]:>{max(len(title) + 1, 9)}.2f}"
                    if leg in legs
                    else f"{'':>{max(len(title) + 1, 9)}}"
                    for leg, title in columns
                )
            )
    out("")


def print_report(figures: dict[str, Any]) -> None:
    out = print
    out("\n" + "=" * 78)
    out("ChatKit proxy benchmark")
    out("=" * 78)
    out(f"command:  {figures['command']}")
    out(f"started:  {figures['started']}")
    m = figures["machine"]
    out(
        f"machine:  nproc={m['nproc']}  {m['cpu_model']}  {m['memory_gib']} GiB  "
        f"kernel {m['kernel']}"
    )
    out(
        f"software: node {m['node']}  python {m['python']}  {m['wrk']}  "
        f"next {m['next']}  undici {m['undici']}"
    )
    wake = figures.get("wake_round_trip")
    if wake:
        out(
            f"wake-ups: a loopback round trip between two processes takes "
            f"{wake['same_core_us']:.0f} µs on one core, {wake['two_cores_us']:.0f} µs across two"
        )
    load = figures["load"]
    out(
        "load avg: "
        + " ".join(f"{v:.2f}" for v in figures["load_average_before"])
        + " (1, 5, 15 min) just before the first measured run"
    )
    out(
        f"load:     wrk -t{load['threads']} -c{load['connections']} -d{load['duration_s']:g}s "
        f"after a {load['warmup_s']:g} s warm-up, {load['rounds']} round(s), median of rounds"
    )
    out("")
    out("Throughput (small JSON POST, 127.0.0.1)")
    header = (
        f"  {'target':<28}{'req/s':>8}{'÷no-op':>8}{'p50 ms':>8}{'p99 ms':>8}{'errors':>7}"
        f"{'next':>7}{'backend':>8}{'wrk':>6}{'other':>7}"
    )
    out(header)
    out(f"  {'':<28}{'':>8}{'':>8}{'':>8}{'':>8}{'':>7}{'CPU µs per request':>21}{'CPU %':>7}")
    out("  " + "-" * (len(header) - 2))
    throughput = figures["throughput"]
    labels = {
        "direct": "(a) backend direct",
        "proxy": "(b) proxy, /api/chatkit",
        "noop": "(c) no-op route",
        "proxy_subpath": "(d) proxy, a path below",
        "noop_catch_all": "(e) no-op catch-all route",
    }
    for key in [k for k in throughput if k in labels or k.startswith("variant:")]:
        r = throughput[key]
        cpu = r["cpu_us_per_request"]
        errors = sum(r["errors"].values())
        label = labels.get(key, "  " + key.removeprefix("variant:"))
        floor = throughput["noop" if key in ("direct", "proxy", "noop") else "noop_catch_all"]
        out(
            f"  {label:<28}{r['rps']:>8.0f}{r['rps'] / floor['rps']:>8.2f}{r['p50_ms']:>8.2f}"
            f"{r['p99_ms']:>8.2f}{errors:>7}{cpu.get('next', 0):>7.0f}"
            f"{cpu.get('backend', 0):>8.0f}{cpu.get('wrk', 0):>6.0f}{r['other_cpu_pct']:>7.1f}"
        )
    out("  (÷no-op: (a) and (b) against (c); (d) and the variants against (e), the no-op of")
    out("  their route shape. other CPU %: the busiest round's share of all cores used by")
    out("  processes not ours)")
    busiest = max(throughput[k]["other_cpu_pct"] for k in throughput if k != "rounds")
    if busiest > 10:
        out(
            f"  WARNING: other processes used up to {busiest:.0f}% of the machine during a run;"
            " req/s figures are disturbed (CPU µs per request much less so)"
        )
    cpu_ratio = (
        throughput["noop"]["cpu_us_per_request"]["next"]
        / throughput["proxy"]["cpu_us_per_request"]["next"]
    )
    out(
        f"  next CPU per request, no-op ÷ proxy: {cpu_ratio:.3f} (what req/s ÷ no-op would be "
        "if next start, one thread, is the bottleneck)"
    )
    shape = throughput["noop_catch_all"]["rps"] / throughput["noop"]["rps"]
    out(f"  the catch-all route shape alone, (e) ÷ (c): {shape:.3f}")
    if "variant:readbody" in throughput:
        fair = throughput["proxy_subpath"]["rps"] / throughput["variant:readbody"]["rps"]
        out(f"  (d) ÷ readbody (a catch-all no-op that reads the body): {fair:.3f}")
    for key in labels:
        out(f"    {key:<15}{throughput[key]['command']}")
    out(
        "  req/s by round: "
        + "; ".join(
            f"{labels[k].split()[0]} " + ", ".join(f"{v:.0f}" for v in throughput["rounds"][k])
            for k in labels
        )
    )
    out("")
    print_sse(figures["sse"], "back to back")
    paused = figures.get("sse_after_pause")
    if paused:
        idle = figures["idle_slowdown"]
        print_sse(paused, f"each after {paused['pause_ms']:g} ms idle")
        out(
            f"  this machine ran fixed CPU work (sha256 of 2 MiB) {idle['slowdown']:.2f}× slower "
            f"after {idle['pause_ms']:g} ms idle: {idle['work_after_pause_ms']:.2f} ms, "
            f"{idle['work_back_to_back_ms']:.2f} ms back to back"
        )
        out("")
    up = figures["upload"]
    out(f"Upload: PUT {up['megabytes']} MiB through the proxy ({up['seconds']:.2f} s)")
    out(
        f"  next start RSS (process tree, sampled every {up['sample_interval_ms']:.0f} ms, "
        f"{up['samples_during']} samples during):"
    )
    after = up["rss_after_mib"]
    out(
        f"  before {up['rss_before_mib']:.1f} MiB   peak {up['rss_peak_mib']:.1f} MiB   "
        f"growth {up['rss_growth_mib']:.1f} MiB   1 s after "
        + (f"{after:.1f} MiB" if after is not None else "?")
    )
    out(
        f"  backend sha256 {'matches' if up['sha256_match'] else 'DOES NOT MATCH'} "
        f"({up['sha256_backend']}, {up['size_backend']} bytes)"
    )
    out("  processes: " + "; ".join(f"{p['pid']} {p['cmd'][:60]}" for p in up["processes"]))
    out("")
    out("Targets")
    for row in figures["targets"]:
        out(
            f"  {row['name']:<38}{row['value']:>10}  target {row['target']:<10}"
            f"{verdict(row['met'])}"
        )
    if paused:
        out(
            f"  (SSE added after {paused['pause_ms']:g} ms idle, median: "
            f"{paused['added_median_ms']:.2f} ms; see above)"
        )
    if figures.get("profile"):
        out("")
        out("CPU profiles (node --cpu-prof on next start; self time under load, µs per request)")
        profiles = figures["profile"]
        for name, prof in profiles.items():
            cpu = prof["cpu_us_per_request"]
            out(
                f"  [{name}] {prof['rps']:.0f} req/s under the profiler, next "
                f"{cpu.get('next', 0):.0f} CPU µs/req (/proc), profiler busy "
                f"{prof['busy_ms'] * 1000 / max(prof['requests'], 1):.0f} µs/req, "
                f"{prof['busy_ms']:.0f} ms busy of {prof['sampled_ms']:.0f} ms sampled"
                + (" under load" if prof["load_window_only"] else " (whole process life)")
            )
            out(f"    {prof['file']}")

        def table(
            kind: str, key: Callable[[dict[str, Any]], str], rows: int, a: str, b: str
        ) -> None:
            first = {key(r): r["us_per_request"] for r in profiles[a][kind]}
            second = {key(r): r["us_per_request"] for r in profiles[b][kind]}
            names = sorted(
                set(first) | set(second), key=lambda n: -(first.get(n, 0) - second.get(n, 0))
            )
            out(f"    {a[:8]:>8}{b[:8]:>9}{'added':>7}  µs/request")
            for n in names[:rows]:
                x, y = first.get(n, 0.0), second.get(n, 0.0)
                out(f"    {x:>8.0f}{y:>9.0f}{x - y:>+7.0f}  {n}")
            rest_x = sum(first.get(n, 0.0) for n in names[rows:])
            rest_y = sum(second.get(n, 0.0) for n in names[rows:])
            out(f"    {rest_x:>8.0f}{rest_y:>9.0f}{rest_x - rest_y:>+7.0f}  (the rest)")
            total_x, total_y = sum(first.values()), sum(second.values())
            out(f"    {total_x:>8.0f}{total_y:>9.0f}{total_x - total_y:>+7.0f}  (all listed)")

        def area(row: dict[str, Any]) -> str:
            return str(row["area"])

        def function(row: dict[str, Any]) -> str:
            return f"{row['function']}  {row['where']}".strip()

        if {"proxy", "noop"} <= set(profiles):
            out("  the proxy's own work: /api/chatkit minus the no-op, by area")
            table("areas", area, 16, "proxy", "noop")
            out("  and by function (the top functions of each profile):")
            table("functions", function, 25, "proxy", "noop")
    out("=" * 78)


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.benchmark", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--workspace",
        type=Path,
        default=DEFAULT_WORKSPACE,
        help="node_modules and the render go here (default %(default)s)",
    )
    parser.add_argument("--threads", type=int, default=1, help="wrk -t (default %(default)s)")
    parser.add_argument("--connections", type=int, default=16, help="wrk -c (default %(default)s)")
    parser.add_argument(
        "--duration",
        type=float,
        default=10.0,
        help="seconds of each measured wrk run (default %(default)s)",
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=3.0,
        help="seconds of wrk warm-up per target (default %(default)s)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="measured wrk runs per target, interleaved (default %(default)s)",
    )
    parser.add_argument("--wrk-timeout", type=float, default=5.0, help=argparse.SUPPRESS)
    parser.add_argument(
        "--sse-requests",
        type=int,
        default=30,
        help="sequential SSE requests per path (default %(default)s)",
    )
    parser.add_argument(
        "--upload-mb", type=int, default=50, help="MiB PUT through the proxy (default %(default)s)"
    )
    parser.add_argument(
        "--rss-interval-ms",
        type=float,
        default=20.0,
        help="RSS sampling period (default %(default)s)",
    )
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    parser.add_argument(
        "--profile",
        metavar="DIR",
        help="afterwards, profile the proxy and no-op loads with node "
        "--cpu-prof, writing .cpuprofile files below DIR",
    )
    parser.add_argument("--profile-top", type=int, default=60, help=argparse.SUPPRESS)
    parser.add_argument(
        "--variants",
        action="store_true",
        help="also build and measure proxy variants (undici vs fetch, "
        "streamed vs buffered bodies) at /api/bench/<variant>/...",
    )
    parser.add_argument(
        "--no-build", action="store_true", help="reuse the workspace's existing render and build"
    )
    args = parser.parse_args(argv)
    limits = [
        (1 <= args.threads <= 4, "--threads must be 1..4"),
        (args.threads <= args.connections <= 256, "--connections must be threads..256"),
        (0 < args.duration <= 120, "--duration must be in (0, 120]"),
        (0 <= args.warmup <= 30, "--warmup must be in [0, 30]"),
        (1 <= args.rounds <= 10, "--rounds must be 1..10"),
        (1 <= args.sse_requests <= 1000, "--sse-requests must be 1..1000"),
        (1 <= args.upload_mb <= 64, "--upload-mb must be 1..64 (the backend's bound)"),
        (5 <= args.rss_interval_ms <= 1000, "--rss-interval-ms must be 5..1000"),
    ]
    for ok, message in limits:
        if not ok:
            parser.error(message)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        print(
            "benchmark: wrk is not installed; run `bash .ci/bench` or `apt-get install wrk`",
            file=sys.stderr,
        )
        return 2
    given = sys.argv[1:] if argv is None else argv
    command = shlex.join(["python", "-m", "tests.benchmark", *given])
    workspace = args.workspace.resolve()
    os.environ["CHATKIT_TEST_WORKSPACE"] = str(workspace)
    log_dir = workspace / "logs"
    app_dir = workspace / "renders" / "bench"

    def step(message: str) -> None:
        print(f"==> {message}", file=sys.stderr, flush=True)

    if args.no_build:
        if not (app_dir / ".next" / "BUILD_ID").exists():
            print(f"benchmark: --no-build but {app_dir} has no build", file=sys.stderr)
            return 2
        if args.variants and not (app_dir / "app" / "api" / "bench").exists():
            print(
                f"benchmark: --no-build --variants but {app_dir} was built without --variants",
                file=sys.stderr,
            )
            return 2
    else:
        step(f"npm packages in {workspace}")
        harness.ensure_node_modules(workspace)
        step(f"rendering into {app_dir}, adding app/api/noop/route.ts")
        # A dead default upstream: the run-time CHATKIT_UPSTREAM_URL is the only way out.
        harness.render(
            app_dir,
            {
                "upstream_url": "http://127.0.0.1:9/unused",
                "upstream_path": CHATKIT_PATH,
                "cookie_name": COOKIE_NAME,
            },
        )
        added = {
            "app/api/noop/route.ts": NOOP_ROUTE,
            "app/api/noop/sse/route.ts": NOOP_SSE_ROUTE,
            "app/api/noop/[...path]/route.ts": NOOP_CATCH_ALL_ROUTE,
        }
        if args.variants:
            added["app/api/bench/[variant]/[...path]/route.ts"] = VARIANT_ROUTE
        for relative, text in added.items():
            path = app_dir / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        step("next build")
        harness.build_app(app_dir, workspace)

    script = workspace / "bench-post.lua"
    script.write_text(
        WRK_SCRIPT
        % {"body": json.dumps(SMALL_BODY), "cookie": json.dumps(f"{COOKIE_NAME}={TOKEN}")}
    )

    servers: list[harness.Server] = []
    try:
        step("starting the scripted backend and next start on 127.0.0.1")
        backend = harness.start_backend(CHATKIT_PATH, log_dir, delta_delay=0.0)
        servers.append(backend)
        # Throughput: one server for every target, so each ratio compares one process with
        # itself. Its backend URL leads below the ChatKit path, to the backend's cheap
        # catch-all, which reads the body and answers a short JSON summary.
        load_env = {"CHATKIT_UPSTREAM_URL": backend.base_url + CHATKIT_PATH + CATCH_ALL_PREFIX}
        load_app = harness.start_app(app_dir, workspace, log_dir / "throughput", **load_env)
        servers.append(load_app)
        # SSE: the same build, whose backend URL ends at the backend's SSE route.
        app = harness.start_app(
            app_dir,
            workspace,
            log_dir,
            CHATKIT_UPSTREAM_URL=backend.base_url + CHATKIT_PATH + SSE_ROUTE,
        )
        servers.append(app)

        reached = CHATKIT_PATH + CATCH_ALL_PREFIX + CHATKIT_PATH
        urls = {
            "direct": backend.base_url + reached,
            "proxy": load_app.base_url + "/api/chatkit",
            "noop": load_app.base_url + "/api/noop",
            "proxy_subpath": load_app.base_url + "/api/chatkit" + SUBPATH,
            "noop_catch_all": load_app.base_url + "/api/noop" + SUBPATH,
        }
        if args.variants:
            for variant in VARIANTS:
                urls[f"variant:{variant}"] = f"{load_app.base_url}/api/bench/{variant}{SUBPATH}"
        with httpx.Client(trust_env=False, timeout=10.0, cookies={COOKIE_NAME: TOKEN}) as http:
            for name, url in urls.items():
                response = http.post(
                    url, content=SMALL_BODY, headers={"content-type": "application/json"}
                )
                answer = response.json() if response.status_code == 200 else {}
                if answer.get("ok") is not True and not str(answer.get("path")).startswith(reached):
                    raise RuntimeError(
                        f"{name} {url} answered {response.status_code}: {response.text[:300]}"
                    )

        load_before = os.getloadavg()
        started = time.strftime("%Y-%m-%d %H:%M:%S %z")
        trees = {"next": load_app.process.pid, "backend": backend.process.pid}
        step(f"warm-up: {args.warmup:g} s of wrk per target")
        for name, url in urls.items():
            if args.warmup > 0:
                run_wrk(name, url, script, args, args.warmup, {})
        rounds: dict[str, list[WrkResult]] = {name: [] for name in urls}
        names = list(urls)
        for index in range(args.rounds):
            step(f"throughput round {index + 1}/{args.rounds}")
            # Each round starts one target later, so no target always follows the same one.
            shift = index % len(names)
            for name in names[shift:] + names[:shift]:
                rounds[name].append(run_wrk(name, urls[name], script, args, args.duration, trees))
                time.sleep(1.0)  # let TIME_WAIT sockets and GC settle between targets

        step(f"SSE time to first event, {args.sse_requests} requests per path")
        sse_urls = {
            "direct": backend.base_url + CHATKIT_PATH + SSE_ROUTE + SSE_QUERY,
            "proxy": app.base_url + "/api/chatkit" + SSE_QUERY,
            "next_floor": app.base_url + "/api/noop/sse?from=bench",
        }
        for variant in VARIANTS if args.variants else ():
            if "-" in variant:  # the variants that reach the backend
                sse_urls[f"variant:{variant}"] = (
                    f"{app.base_url}/api/bench/{variant}/stream{SSE_QUERY}"
                )
        # A server that has served only a few streams runs their code unoptimised: warm
        # every path up with wrk, as the throughput targets were.
        sse_warmup = max(args.warmup, 3.0)
        step(f"SSE warm-up: {sse_warmup:g} s of wrk per path")
        for name, url in sse_urls.items():
            run_wrk(f"sse_warmup:{name}", url, script, args, sse_warmup, {})
        sse = measure_sse(sse_urls, args.sse_requests, warmup=10, backend_url=backend.base_url)
        step(f"SSE again, {SSE_PAUSE_S * 1000:g} ms idle before each request")
        sse_after_pause = measure_sse(
            sse_urls,
            args.sse_requests,
            warmup=10,
            backend_url=backend.base_url,
            pause_s=SSE_PAUSE_S,
            tag="idle",
        )
        idle = idle_slowdown(SSE_PAUSE_S)
        wake = wake_round_trip()

        step(f"upload: PUT {args.upload_mb} MiB through the proxy, sampling RSS")
        upload = measure_upload(load_app, args.upload_mb, args.rss_interval_ms / 1000)

        throughput: dict[str, Any] = {
            name: asdict(median_result(runs)) for name, runs in rounds.items()
        }
        throughput["rounds"] = {name: [r.rps for r in runs] for name, runs in rounds.items()}
        ratio = throughput["proxy"]["rps"] / throughput["noop"]["rps"]
        subpath_ratio = throughput["proxy_subpath"]["rps"] / throughput["noop_catch_all"]["rps"]
        targets = [
            {
                "name": "req/s, /api/chatkit ÷ no-op",
                "value": f"{ratio:.3f}",
                "target": f"≥ {TARGETS['rps_ratio']}",
                "met": ratio >= TARGETS["rps_ratio"],
            },
            {
                "name": "req/s, a path below ÷ no-op catch-all",
                "value": f"{subpath_ratio:.3f}",
                "target": f"≥ {TARGETS['rps_ratio']}",
                "met": subpath_ratio >= TARGETS["rps_ratio"],
            },
            {
                "name": "SSE TTFE added by proxy (median)",
                "value": f"{sse['added_median_ms']:.2f} ms",
                "target": f"≤ {TARGETS['sse_added_ms']:g} ms",
                "met": sse["added_median_ms"] <= TARGETS["sse_added_ms"],
            },
            {
                "name": f"peak RSS growth, {args.upload_mb} MiB upload",
                "value": f"{upload['rss_growth_mib']:.1f} MiB",
                "target": f"≤ {TARGETS['rss_growth_mib']:g} MiB",
                "met": upload["rss_growth_mib"] <= TARGETS["rss_growth_mib"],
            },
            {
                "name": "upload sha256 at the backend",
                "value": "match" if upload["sha256_match"] else "mismatch",
                "target": "match",
                "met": bool(upload["sha256_match"]),
            },
        ]
        figures: dict[str, Any] = {
            "command": command,
            "started": started,
            "machine": machine_info(workspace),
            "load": {
                "threads": args.threads,
                "connections": args.connections,
                "duration_s": args.duration,
                "warmup_s": args.warmup,
                "rounds": args.rounds,
                "body": SMALL_BODY,
                "lua_script": str(script),
            },
            "throughput": throughput,
            "proxy_over_noop_rps": ratio,
            "proxy_subpath_over_noop_catch_all_rps": subpath_ratio,
            "proxy_over_direct_rps": throughput["proxy"]["rps"] / throughput["direct"]["rps"],
            "next_cpu_noop_over_proxy": throughput["noop"]["cpu_us_per_request"]["next"]
            / throughput["proxy"]["cpu_us_per_request"]["next"],
            "load_average_before": load_before,
            "sse": sse,
            "sse_after_pause": sse_after_pause,
            "idle_slowdown": idle,
            "wake_round_trip": wake,
            "upload": upload,
            "targets": targets,
        }

        if args.profile:
            app.stop()
            load_app.stop()
            figures["profile"] = {}
            for name in ("proxy", "noop"):
                step(f"profiling the {name} load under node --cpu-prof")
                path = urls[name][len(load_app.base_url) :]
                figures["profile"][name] = profile_load(
                    name, path, app_dir, workspace, log_dir, load_env, script, args, backend
                )
    finally:
        for server in reversed(servers):
            server.stop()

    print_report(figures)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, ensure_ascii=False) + "\n")
        print(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
