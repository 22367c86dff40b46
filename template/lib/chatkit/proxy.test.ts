import { randomBytes } from "node:crypto";
import {
  createServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from "node:http";
import type { AddressInfo } from "node:net";
import { gzipSync } from "node:zlib";

import {
  afterAll,
  afterEach,
  beforeAll,
  beforeEach,
  describe,
  expect,
  it,
  vi,
} from "vitest";

import {
  buildUpstreamHeaders,
  buildUpstreamUrl,
  encodeSubpath,
  endToEndHeaders,
  isAllowedOrigin,
  jsonError,
  proxyChatKitRequest,
  readTokenCookie,
  toClientResponse,
  type ProxySettings,
  WHOLE_BODY_MAX_BYTES,
} from "./proxy";

/** What the local upstream saw of one request. */
interface Received {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: Buffer;
  /** Resolves when the connection closes before the response was finished. */
  aborted: Promise<void>;
}

type Responder = (request: Received, res: ServerResponse) => void;

let server: Server;
let upstreamUrl: string;
let received: Received[] = [];
/** Requests whose headers the upstream has seen, bodies finished or not. */
let started = 0;
let respond: Responder = (_request, res) => res.end();

function onRequest(req: IncomingMessage, res: ServerResponse): void {
  started += 1;
  const chunks: Buffer[] = [];
  const aborted = new Promise<void>((resolve) => {
    res.on("close", () => {
      if (!res.writableFinished) {
        resolve();
      }
    });
  });
  req.on("data", (chunk: Buffer) => chunks.push(chunk));
  req.on("end", () => {
    const request: Received = {
      method: req.method ?? "",
      url: req.url ?? "",
      headers: req.headers,
      body: Buffer.concat(chunks),
      aborted,
    };
    received.push(request);
    respond(request, res);
  });
}

function listen(target: Server): Promise<number> {
  return new Promise((resolve) => {
    target.listen(0, "127.0.0.1", () => {
      resolve((target.address() as AddressInfo).port);
    });
  });
}

function close(target: Server): Promise<void> {
  target.closeAllConnections();
  return new Promise((resolve) => target.close(() => resolve()));
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Resolves once the upstream has received `count` requests, or fails after 2 s. */
async function upstreamReceived(count: number): Promise<void> {
  for (let attempt = 0; attempt < 200 && received.length < count; attempt++) {
    await delay(10);
  }
  expect(received).toHaveLength(count);
}

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { "Content-Type": "application/json" });
  res.end(JSON.stringify(body));
}

beforeAll(async () => {
  server = createServer(onRequest);
  upstreamUrl = `http://127.0.0.1:${await listen(server)}`;
});

afterAll(async () => {
  await close(server);
});

beforeEach(() => {
  received = [];
  started = 0;
  respond = (_request, res) => json(res, 200, { ok: true });
  vi.spyOn(console, "error").mockImplementation(() => {});
});

afterEach(() => {
  vi.restoreAllMocks();
});

const cookieName = "id_token";
const claims = { sub: "user-1", name: "Ada" };
const token = [
  "eyJhbGciOiJub25lIn0",
  Buffer.from(JSON.stringify(claims)).toString("base64url"),
  "signature",
].join(".");

function settings(overrides: Partial<ProxySettings> = {}): ProxySettings {
  return {
    cookieName,
    upstreamUrl,
    upstreamPath: "/chatkit",
    forwardedHeaders: [
      { name: "X-Page-URL", source: "client" },
      { name: "X-User-ID", source: "claim", value: "sub" },
      { name: "X-Api-Key", source: "env", value: "CHATKIT_API_KEY" },
      { name: "X-Client", source: "static", value: "chatkit-web" },
    ],
    timeoutMs: 5_000,
    allowedOrigins: [],
    env: { CHATKIT_API_KEY: "key-1" },
    ...overrides,
  };
}

function chatRequest(
  init: RequestInit & { cookie?: string | null; path?: string } = {},
): Request {
  const { cookie = `${cookieName}=${token}`, path = "/api/chatkit" } = init;
  const headers = new Headers(init.headers);
  if (cookie !== null) {
    headers.set("cookie", cookie);
  }
  if (!headers.has("content-type")) {
    headers.set("content-type", "application/json");
  }
  return new Request(`http://127.0.0.1:3000${path}`, {
    method: "POST",
    body: JSON.stringify({ type: "threads.list", params: {} }),
    ...init,
    headers,
  });
}

describe("proxyChatKitRequest", () => {
  it("returns 401 without calling the backend when the cookie is missing", async () => {
    const response = await proxyChatKitRequest(
      chatRequest({ cookie: null }),
      settings(),
    );

    expect(response.status).toBe(401);
    expect(response.headers.get("content-type")).toMatch(/^application\/json/);
    expect(await response.json()).toEqual({
      error: "Not signed in: the id_token cookie is missing.",
    });
    await delay(20);
    expect(received).toHaveLength(0);
  });

  it("returns 401 without calling the backend when only other cookies are sent", async () => {
    const response = await proxyChatKitRequest(
      chatRequest({ cookie: "theme=dark; other_token=abc" }),
      settings(),
    );

    expect(response.status).toBe(401);
    await delay(20);
    expect(received).toHaveLength(0);
  });

  it("returns 401 without calling the backend when the cookie is empty", async () => {
    const response = await proxyChatKitRequest(
      chatRequest({ cookie: `${cookieName}=` }),
      settings(),
    );

    expect(response.status).toBe(401);
    await delay(20);
    expect(received).toHaveLength(0);
  });

  it("returns 401 when the cookie decodes to a value a header cannot carry", async () => {
    for (const cookie of [
      `${cookieName}=a%0D%0Ab`,
      `${cookieName}=%E2%82%AC`,
    ]) {
      const response = await proxyChatKitRequest(
        chatRequest({ cookie }),
        settings(),
      );

      expect(response.status).toBe(401);
    }
    await delay(20);
    expect(received).toHaveLength(0);
  });

  it("sends the cookie's token as a Bearer header", async () => {
    const response = await proxyChatKitRequest(chatRequest(), settings());

    expect(response.status).toBe(200);
    expect(received[0].headers.authorization).toBe(`Bearer ${token}`);
  });

  it("unquotes a quoted cookie value", async () => {
    await proxyChatKitRequest(
      chatRequest({ cookie: `${cookieName}="${token}"` }),
      settings(),
    );

    expect(received[0].headers.authorization).toBe(`Bearer ${token}`);
  });

  it("percent-decodes a percent-encoded cookie value", async () => {
    await proxyChatKitRequest(
      chatRequest({ cookie: `${cookieName}=${token.replace(/\./g, "%2E")}` }),
      settings(),
    );

    expect(received[0].headers.authorization).toBe(`Bearer ${token}`);
  });

  it("finds the cookie among others", async () => {
    await proxyChatKitRequest(
      chatRequest({
        cookie: `theme=dark; x${cookieName}=wrong; ${cookieName}=${token}; z=1`,
      }),
      settings(),
    );

    expect(received[0].headers.authorization).toBe(`Bearer ${token}`);
  });

  it("sends the configured headers", async () => {
    await proxyChatKitRequest(
      chatRequest({ headers: { "X-Page-URL": "http://127.0.0.1:3000/help" } }),
      settings(),
    );

    expect(received[0].headers).toMatchObject({
      "x-page-url": "http://127.0.0.1:3000/help",
      "x-user-id": "user-1",
      "x-api-key": "key-1",
      "x-client": "chatkit-web",
    });
  });

  it("reads env headers per request", async () => {
    const env: Record<string, string | undefined> = { CHATKIT_API_KEY: "a" };

    await proxyChatKitRequest(chatRequest(), settings({ env }));
    env.CHATKIT_API_KEY = "b";
    await proxyChatKitRequest(chatRequest(), settings({ env }));

    expect(received.map((request) => request.headers["x-api-key"])).toEqual([
      "a",
      "b",
    ]);
  });

  it("does not send the browser's Cookie header upstream", async () => {
    await proxyChatKitRequest(
      chatRequest({ cookie: `theme=dark; ${cookieName}=${token}` }),
      settings(),
    );

    expect(received[0].headers.cookie).toBeUndefined();
  });

  it("does not send unlisted browser headers upstream", async () => {
    await proxyChatKitRequest(
      chatRequest({
        headers: {
          "X-Other": "secret",
          Origin: "http://127.0.0.1:3000",
          Referer: "http://127.0.0.1:3000/",
        },
      }),
      settings(),
    );

    expect(received[0].headers["x-other"]).toBeUndefined();
    expect(received[0].headers.origin).toBeUndefined();
    expect(received[0].headers.referer).toBeUndefined();
  });

  it("overrides a client-sent X-User-ID with the token's claim", async () => {
    await proxyChatKitRequest(
      chatRequest({ headers: { "X-User-ID": "someone-else" } }),
      settings(),
    );

    expect(received[0].headers["x-user-id"]).toBe("user-1");
  });

  it("overrides a client-sent Authorization header with the cookie's token", async () => {
    await proxyChatKitRequest(
      chatRequest({ headers: { Authorization: "Bearer forged" } }),
      settings(),
    );

    expect(received[0].headers.authorization).toBe(`Bearer ${token}`);
  });

  it("passes Accept, Accept-Language and Content-Type on", async () => {
    await proxyChatKitRequest(
      chatRequest({
        headers: {
          Accept: "text/event-stream",
          "Accept-Language": "fr-CH",
          "Content-Type": "application/json; charset=utf-8",
        },
      }),
      settings(),
    );

    expect(received[0].headers).toMatchObject({
      accept: "text/event-stream",
      "accept-language": "fr-CH",
      "content-type": "application/json; charset=utf-8",
    });
  });

  it("sends the request to the base URL plus the ChatKit path", async () => {
    await proxyChatKitRequest(chatRequest(), settings());

    expect(received[0].method).toBe("POST");
    expect(received[0].url).toBe("/chatkit");
  });

  it("keeps a path prefix and drops a trailing slash on the base URL", async () => {
    await proxyChatKitRequest(
      chatRequest(),
      settings({ upstreamUrl: `${upstreamUrl}/api/v1/` }),
    );

    expect(received[0].url).toBe("/api/v1/chatkit");
  });

  it("keeps the query string", async () => {
    await proxyChatKitRequest(
      chatRequest({ path: "/api/chatkit?thread=t%201&x=1&x=2" }),
      settings({ upstreamUrl: `${upstreamUrl}/prefix/` }),
    );

    expect(received[0].url).toBe("/prefix/chatkit?thread=t%201&x=1&x=2");
  });

  it("sends the request body's bytes unchanged", async () => {
    const bytes = randomBytes(64 * 1024);
    const contentType = "multipart/form-data; boundary=----chatkit-boundary";

    await proxyChatKitRequest(
      chatRequest({ body: bytes, headers: { "Content-Type": contentType } }),
      settings(),
    );

    expect(received[0].headers["content-type"]).toBe(contentType);
    expect(received[0].body.equals(bytes)).toBe(true);
  });

  it("sends a path below /api/chatkit to the same path below the endpoint", async () => {
    await proxyChatKitRequest(
      chatRequest({ method: "PUT", path: "/api/chatkit/files/a%20b?part=1" }),
      settings({ upstreamUrl: `${upstreamUrl}/prefix` }),
      ["files", "a b"],
    );

    expect(received[0].method).toBe("PUT");
    expect(received[0].url).toBe("/prefix/chatkit/files/a%20b?part=1");
  });

  it("returns 400 without calling the backend for a path that climbs out", async () => {
    const response = await proxyChatKitRequest(chatRequest(), settings(), [
      "files",
      "..",
      "admin",
    ]);

    expect(response.status).toBe(400);
    expect(await response.json()).toHaveProperty("error");
    await delay(20);
    expect(received).toHaveLength(0);
  });

  it("returns 403 without calling the backend for another site's page", async () => {
    const response = await proxyChatKitRequest(
      chatRequest({ headers: { Origin: "https://evil.example" } }),
      settings(),
    );

    expect(response.status).toBe(403);
    await delay(20);
    expect(received).toHaveLength(0);
  });

  it("lets a listed origin through", async () => {
    const response = await proxyChatKitRequest(
      chatRequest({ headers: { Origin: "https://admin.example" } }),
      settings({ allowedOrigins: ["https://admin.example"] }),
    );

    expect(response.status).toBe(200);
  });

  it("sends the body's true Content-Length rather than chunking it", async () => {
    const bytes = randomBytes(100_000);

    await proxyChatKitRequest(
      chatRequest({
        body: bytes,
        headers: { "Content-Length": String(bytes.length) },
      }),
      settings(),
    );

    expect(received[0].headers["content-length"]).toBe(String(bytes.length));
    expect(received[0].headers["transfer-encoding"]).toBeUndefined();
    expect(received[0].body.equals(bytes)).toBe(true);
  });

  /**
   * A chat request whose body sends `first`, then `rest` once `release` is called;
   * with its Content-Length unless `withLength` is false.
   */
  function heldRequest(first: Uint8Array, rest: Uint8Array, withLength = true) {
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    const body = new ReadableStream<Uint8Array>({
      async start(controller) {
        controller.enqueue(first);
        await released;
        controller.enqueue(rest);
        controller.close();
      },
    });
    const length = String(first.length + rest.length);
    const request = chatRequest({
      body,
      duplex: "half",
      headers: withLength ? { "Content-Length": length } : {},
    } as RequestInit);
    return { request, release, length };
  }

  /** Resolves once the upstream has the headers of a request, or fails after 2 s. */
  async function upstreamStarted(): Promise<void> {
    for (let attempt = 0; attempt < 200 && started === 0; attempt++) {
      await delay(10);
    }
    expect(started).toBe(1);
  }

  it("reads a small body whole before calling the backend", async () => {
    const { request, release, length } = heldRequest(
      new TextEncoder().encode('{"type":'),
      new TextEncoder().encode('"threads.list"}'),
    );

    const pending = proxyChatKitRequest(request, settings());
    await delay(100);
    expect(started).toBe(0);
    release();
    await pending;

    expect(received[0].body.toString()).toBe('{"type":"threads.list"}');
    expect(received[0].headers["content-length"]).toBe(length);
  });

  it("sends a small body once its Content-Length has arrived, without waiting for its end", async () => {
    const { request, release } = heldRequest(
      new TextEncoder().encode('{"type":"threads.list"}'),
      new Uint8Array(),
    );

    const pending = proxyChatKitRequest(request, settings());
    await upstreamStarted();
    release();
    await pending;

    expect(received[0].body.toString()).toBe('{"type":"threads.list"}');
  });

  it("streams a large body instead of reading it whole first", async () => {
    const first = randomBytes(WHOLE_BODY_MAX_BYTES);
    const rest = randomBytes(1_000);
    const { request, release } = heldRequest(first, rest);

    const pending = proxyChatKitRequest(request, settings());
    await upstreamStarted();
    expect(received).toHaveLength(0);
    release();
    await pending;

    expect(received[0].body.equals(Buffer.concat([first, rest]))).toBe(true);
  });

  it("streams a body of unknown length", async () => {
    const { request, release } = heldRequest(
      new TextEncoder().encode("part one, "),
      new TextEncoder().encode("part two"),
      false,
    );

    const pending = proxyChatKitRequest(request, settings());
    await upstreamStarted();
    release();
    await pending;

    expect(received[0].body.toString()).toBe("part one, part two");
    expect(received[0].headers["transfer-encoding"]).toBe("chunked");
  });

  it("returns 499 when the browser leaves while its body is read", async () => {
    const controller = new AbortController();
    // As Next's request body does, the stream fails when the browser's connection goes.
    const body = new ReadableStream<Uint8Array>({
      start(stream) {
        stream.enqueue(new TextEncoder().encode("{"));
        controller.signal.addEventListener("abort", () =>
          stream.error(new Error("aborted")),
        );
      },
    });

    const pending = proxyChatKitRequest(
      chatRequest({
        body,
        duplex: "half",
        signal: controller.signal,
        headers: { "Content-Length": "2" },
      } as RequestInit),
      settings(),
    );
    await delay(20);
    controller.abort();

    expect((await pending).status).toBe(499);
    expect(started).toBe(0);
    expect(console.error).not.toHaveBeenCalled();
  });

  it("ends a broken event stream with a ChatKit error event", async () => {
    respond = (_request, res) => {
      res.writeHead(200, { "Content-Type": "text/event-stream" });
      res.write('data: {"type":"thread.created"}\n\n');
      setTimeout(() => res.socket?.destroy(), 20);
    };

    const response = await proxyChatKitRequest(chatRequest(), settings());
    const text = await response.text();

    const events = text
      .split("\n\n")
      .filter((block) => block.startsWith("data: "))
      .map((block) => JSON.parse(block.slice("data: ".length)));
    expect(events[0]).toEqual({ type: "thread.created" });
    expect(events.at(-1)).toMatchObject({ type: "error", allow_retry: true });
  });

  it("errors a broken non-stream body instead of ending it cleanly", async () => {
    respond = (_request, res) => {
      res.writeHead(200, {
        "Content-Type": "application/octet-stream",
        "Content-Length": "1000",
      });
      res.write(Buffer.alloc(10));
      setTimeout(() => res.socket?.destroy(), 20);
    };

    const response = await proxyChatKitRequest(chatRequest(), settings());

    await expect(response.arrayBuffer()).rejects.toThrow();
  });

  it("sends a GET without a body", async () => {
    await proxyChatKitRequest(
      chatRequest({ method: "GET", body: null }),
      settings(),
    );

    expect(received[0].method).toBe("GET");
    expect(received[0].body).toHaveLength(0);
  });

  it.each([200, 400, 409, 429, 500])(
    "passes a JSON %i response's status and body through",
    async (status) => {
      respond = (_request, res) =>
        json(res, status, { error: "busy", code: status });

      const response = await proxyChatKitRequest(chatRequest(), settings());

      expect(response.status).toBe(status);
      expect(response.headers.get("content-type")).toBe("application/json");
      expect(await response.json()).toEqual({ error: "busy", code: status });
    },
  );

  it("passes a Retry-After header through", async () => {
    respond = (_request, res) => {
      res.setHeader("Retry-After", "30");
      json(res, 429, { error: "slow down" });
    };

    const response = await proxyChatKitRequest(chatRequest(), settings());

    expect(response.headers.get("retry-after")).toBe("30");
  });

  it("keeps a 204 response empty", async () => {
    respond = (_request, res) => {
      res.writeHead(204, { "X-Request-ID": "r-1" });
      res.end();
    };

    const response = await proxyChatKitRequest(chatRequest(), settings());

    expect(response.status).toBe(204);
    expect(response.body).toBeNull();
    expect(response.headers.get("x-request-id")).toBe("r-1");
  });

  it("passes a text/plain response through", async () => {
    respond = (_request, res) => {
      res.writeHead(200, { "Content-Type": "text/plain; charset=utf-8" });
      res.end("héllo, 世界");
    };

    const response = await proxyChatKitRequest(chatRequest(), settings());

    expect(response.headers.get("content-type")).toBe(
      "text/plain; charset=utf-8",
    );
    expect(await response.text()).toBe("héllo, 世界");
  });

  it("does not mark a non-stream response as uncacheable", async () => {
    respond = (_request, res) => {
      res.writeHead(200, { "Content-Type": "text/plain" });
      res.end("ok");
    };

    const response = await proxyChatKitRequest(chatRequest(), settings());

    expect(response.headers.get("x-accel-buffering")).toBeNull();
    expect(response.headers.get("cache-control")).toBeNull();
  });

  it("keeps several Set-Cookie headers separate", async () => {
    respond = (_request, res) => {
      res.setHeader("Set-Cookie", [
        "a=1; Path=/; HttpOnly",
        "b=2; Expires=Wed, 21 Oct 2026 07:28:00 GMT",
      ]);
      json(res, 200, { ok: true });
    };

    const response = await proxyChatKitRequest(chatRequest(), settings());

    expect(response.headers.getSetCookie()).toEqual([
      "a=1; Path=/; HttpOnly",
      "b=2; Expires=Wed, 21 Oct 2026 07:28:00 GMT",
    ]);
  });

  it("does not forward hop-by-hop headers to the browser", async () => {
    respond = (_request, res) => {
      res.writeHead(200, {
        "Content-Type": "application/json",
        Connection: "keep-alive, X-Hop",
        "Keep-Alive": "timeout=5",
        "X-Hop": "connection-only",
        "X-End-To-End": "kept",
      });
      res.end(JSON.stringify({ ok: true }));
    };

    const response = await proxyChatKitRequest(chatRequest(), settings());

    expect(response.headers.get("connection")).toBeNull();
    expect(response.headers.get("keep-alive")).toBeNull();
    expect(response.headers.get("x-hop")).toBeNull();
    expect(response.headers.get("transfer-encoding")).toBeNull();
    expect(response.headers.get("x-end-to-end")).toBe("kept");
  });

  it("decodes a compressed response and drops its stale length", async () => {
    const body = JSON.stringify({ message: "x".repeat(1000) });
    const compressed = gzipSync(body);
    respond = (_request, res) => {
      res.writeHead(200, {
        "Content-Type": "application/json",
        "Content-Encoding": "gzip",
        "Content-Length": String(compressed.length),
      });
      res.end(compressed);
    };

    const response = await proxyChatKitRequest(chatRequest(), settings());

    expect(response.headers.get("content-encoding")).toBeNull();
    expect(response.headers.get("content-length")).toBeNull();
    expect(await response.text()).toBe(body);
  });

  it("returns 502 for a Content-Encoding it cannot decode", async () => {
    respond = (_request, res) => {
      res.writeHead(200, { "Content-Encoding": "x-unknown" });
      res.end("???");
    };

    const response = await proxyChatKitRequest(chatRequest(), settings());

    expect(response.status).toBe(502);
    expect(await response.json()).toHaveProperty("error");
  });

  it("marks an event stream as uncacheable and unbuffered", async () => {
    respond = (_request, res) => {
      res.writeHead(200, {
        "Content-Type": "text/event-stream; charset=utf-8",
        "Cache-Control": "max-age=60",
      });
      res.end("data: {}\n\n");
    };

    const response = await proxyChatKitRequest(chatRequest(), settings());

    expect(response.headers.get("content-type")).toBe(
      "text/event-stream; charset=utf-8",
    );
    expect(response.headers.get("cache-control")).toBe(
      "no-cache, no-transform",
    );
    expect(response.headers.get("x-accel-buffering")).toBe("no");
  });

  it("streams event chunks before the backend has finished", async () => {
    let release = () => {};
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    let finished = false;
    respond = (_request, res) => {
      res.writeHead(200, { "Content-Type": "text/event-stream" });
      res.write("data: one\n\n");
      void (async () => {
        // Wait for the test to have read the first chunk (at most 2 s).
        await Promise.race([released, delay(2_000)]);
        await delay(20);
        res.write("data: two\n\n");
        await delay(20);
        res.write("data: three\n\n");
        await delay(20);
        finished = true;
        res.end();
      })();
    };

    const response = await proxyChatKitRequest(chatRequest(), settings());
    const reader = response.body!.getReader();
    const decoder = new TextDecoder();

    const first = await reader.read();
    expect(decoder.decode(first.value)).toBe("data: one\n\n");
    expect(finished).toBe(false);

    release();
    let rest = "";
    for (let reads = 0; reads < 100; reads++) {
      const { done, value } = await reader.read();
      if (done) {
        break;
      }
      rest += decoder.decode(value, { stream: true });
    }
    expect(rest).toBe("data: two\n\ndata: three\n\n");
    expect(finished).toBe(true);
  });

  it("returns 502 JSON when the backend cannot be reached", async () => {
    const closed = createServer();
    const port = await listen(closed);
    await close(closed);

    const response = await proxyChatKitRequest(
      chatRequest(),
      settings({ upstreamUrl: `http://127.0.0.1:${port}` }),
    );

    expect(response.status).toBe(502);
    expect(await response.json()).toEqual({
      error: "The ChatKit backend could not be reached.",
    });
  });

  it("returns 504 JSON when the backend does not answer in time", async () => {
    respond = () => {
      // Never answers.
    };

    const started = Date.now();
    const response = await proxyChatKitRequest(
      chatRequest(),
      settings({ timeoutMs: 200 }),
    );

    expect(Date.now() - started).toBeLessThan(2_000);
    expect(response.status).toBe(504);
    expect(await response.json()).toEqual({
      error: "The ChatKit backend did not answer within 200 ms.",
    });
  });

  it("closes the upstream request when it times out", async () => {
    respond = () => {
      // Never answers.
    };

    await proxyChatKitRequest(chatRequest(), settings({ timeoutMs: 200 }));

    await expect(
      Promise.race([
        received[0].aborted.then(() => "closed"),
        delay(2_000).then(() => "still open"),
      ]),
    ).resolves.toBe("closed");
  });

  it("does not time out a stream that outlives the timeout", async () => {
    respond = (_request, res) => {
      res.writeHead(200, { "Content-Type": "text/event-stream" });
      res.write("data: one\n\n");
      setTimeout(() => res.end("data: two\n\n"), 300);
    };

    const response = await proxyChatKitRequest(
      chatRequest(),
      settings({ timeoutMs: 100 }),
    );

    expect(response.status).toBe(200);
    expect(await response.text()).toBe("data: one\n\ndata: two\n\n");
  });

  it("aborts the upstream request when the browser's request is aborted", async () => {
    respond = () => {
      // Never answers; the abort must end the request.
    };
    const controller = new AbortController();

    const pending = proxyChatKitRequest(
      chatRequest({ signal: controller.signal }),
      settings(),
    );
    await upstreamReceived(1);
    controller.abort();

    await expect(
      Promise.race([
        received[0].aborted.then(() => "closed"),
        delay(2_000).then(() => "still open"),
      ]),
    ).resolves.toBe("closed");
    await pending;
  });

  it("aborts an upstream stream when the browser's request is aborted", async () => {
    respond = (_request, res) => {
      res.writeHead(200, { "Content-Type": "text/event-stream" });
      res.write("data: one\n\n");
      // Never ends; the abort must end the stream.
    };
    const controller = new AbortController();

    const response = await proxyChatKitRequest(
      chatRequest({ signal: controller.signal }),
      settings(),
    );
    const reader = response.body!.getReader();
    await reader.read();
    controller.abort();

    await expect(
      Promise.race([
        received[0].aborted.then(() => "closed"),
        delay(2_000).then(() => "still open"),
      ]),
    ).resolves.toBe("closed");
  });
});

describe("isAllowedOrigin", () => {
  function from(headers: Record<string, string>): Request {
    return new Request("http://127.0.0.1:3000/api/chatkit", { headers });
  }

  it("allows a request without Origin or Sec-Fetch-Site", () => {
    expect(isAllowedOrigin(from({}), [])).toBe(true);
  });

  it("allows the app's own origin", () => {
    expect(isAllowedOrigin(from({ Origin: "http://127.0.0.1:3000" }), [])).toBe(
      true,
    );
  });

  it("allows the origin the Host header names", () => {
    const request = from({
      Origin: "http://chat.local:8080",
      Host: "chat.local:8080",
    });

    expect(isAllowedOrigin(request, [])).toBe(true);
  });

  it("refuses another origin", () => {
    expect(isAllowedOrigin(from({ Origin: "https://evil.example" }), [])).toBe(
      false,
    );
  });

  it("refuses the opaque null origin", () => {
    expect(isAllowedOrigin(from({ Origin: "null" }), [])).toBe(false);
  });

  it("allows a listed origin", () => {
    const request = from({ Origin: "https://admin.example" });

    expect(isAllowedOrigin(request, ["https://admin.example"])).toBe(true);
  });

  it.each(["cross-site", "same-site"])(
    "refuses Sec-Fetch-Site %s without Origin",
    (site) => {
      expect(isAllowedOrigin(from({ "Sec-Fetch-Site": site }), [])).toBe(false);
    },
  );

  it.each(["same-origin", "none"])(
    "allows Sec-Fetch-Site %s without Origin",
    (site) => {
      expect(isAllowedOrigin(from({ "Sec-Fetch-Site": site }), [])).toBe(true);
    },
  );
});

describe("encodeSubpath", () => {
  it("returns an empty path for no segments", () => {
    expect(encodeSubpath([])).toBe("");
  });

  it("encodes each segment again", () => {
    expect(encodeSubpath(["files", "a b", "x?y#z"])).toBe(
      "/files/a%20b/x%3Fy%23z",
    );
  });

  it("keeps a percent sign from being decoded twice", () => {
    expect(encodeSubpath(["%2e%2e"])).toBe("/%252e%252e");
  });

  it.each([[".."], ["."], [""], ["a/b"], ["..\\x"], ["a\u0000b"], ["a\nb"]])(
    "refuses the segment %j",
    (segment) => {
      expect(encodeSubpath(["files", segment])).toBeNull();
    },
  );
});

describe("readTokenCookie", () => {
  it("returns null without a Cookie header", () => {
    expect(readTokenCookie(null, "id_token")).toBeNull();
  });

  it("returns the named cookie's value", () => {
    expect(readTokenCookie("id_token=abc.def.ghi", "id_token")).toBe(
      "abc.def.ghi",
    );
  });

  it("finds the named cookie among others", () => {
    expect(readTokenCookie("a=1;id_token=tok; b=2", "id_token")).toBe("tok");
  });

  it("does not match a cookie whose name only ends with the name", () => {
    expect(readTokenCookie("xid_token=wrong", "id_token")).toBeNull();
  });

  it("keeps = signs inside the value", () => {
    expect(readTokenCookie("id_token=abc==", "id_token")).toBe("abc==");
  });

  it("unquotes a quoted value", () => {
    expect(readTokenCookie('id_token="abc"', "id_token")).toBe("abc");
  });

  it("percent-decodes the value", () => {
    expect(readTokenCookie("id_token=a%2Eb%2Ec", "id_token")).toBe("a.b.c");
  });

  it("keeps a value that is not valid percent-encoding", () => {
    expect(readTokenCookie("id_token=100%", "id_token")).toBe("100%");
  });

  it("returns null for an empty value", () => {
    expect(readTokenCookie("id_token=; a=1", "id_token")).toBeNull();
  });

  it("returns null for an empty quoted value", () => {
    expect(readTokenCookie('id_token=""', "id_token")).toBeNull();
  });

  it("returns null for a value that decodes to CR or LF", () => {
    expect(readTokenCookie("id_token=a%0D%0Ab", "id_token")).toBeNull();
  });

  it("returns null for a value that decodes outside Latin-1", () => {
    expect(readTokenCookie("id_token=%E2%82%AC", "id_token")).toBeNull();
  });

  it("works with cookie names that hold special characters", () => {
    expect(readTokenCookie("__Host-a.b$c=tok", "__Host-a.b$c")).toBe("tok");
  });
});

describe("buildUpstreamUrl", () => {
  it("appends the path to a bare origin", () => {
    expect(buildUpstreamUrl("http://127.0.0.1:8000", "/chatkit", "").href).toBe(
      "http://127.0.0.1:8000/chatkit",
    );
  });

  it("keeps the base URL's path prefix", () => {
    expect(
      buildUpstreamUrl("http://127.0.0.1:8000/api/v1", "/chatkit", "").href,
    ).toBe("http://127.0.0.1:8000/api/v1/chatkit");
  });

  it("drops trailing slashes on the base URL", () => {
    expect(
      buildUpstreamUrl("http://127.0.0.1:8000/api//", "/chatkit", "").href,
    ).toBe("http://127.0.0.1:8000/api/chatkit");
  });

  it("sets the query string", () => {
    expect(
      buildUpstreamUrl("http://127.0.0.1:8000", "/chatkit", "?a=1&b=%20").href,
    ).toBe("http://127.0.0.1:8000/chatkit?a=1&b=%20");
  });

  it("drops a fragment", () => {
    expect(
      buildUpstreamUrl("http://127.0.0.1:8000/#x", "/chatkit", "").href,
    ).toBe("http://127.0.0.1:8000/chatkit");
  });
});

describe("buildUpstreamHeaders", () => {
  const upstreamHeaders = (...args: Parameters<typeof buildUpstreamHeaders>) =>
    new Headers(buildUpstreamHeaders(...args));
  const rules = settings().forwardedHeaders;

  it("sets the Bearer header", () => {
    const headers = upstreamHeaders(new Headers(), token, {
      forwardedHeaders: [],
      env: {},
    });

    expect(headers.get("authorization")).toBe(`Bearer ${token}`);
  });

  it("resolves claim headers from the token", () => {
    const headers = upstreamHeaders(new Headers(), token, {
      forwardedHeaders: rules,
      env: {},
    });

    expect(headers.get("x-user-id")).toBe("user-1");
  });

  it("leaves claim headers out when the token is not a JWT", () => {
    const headers = upstreamHeaders(new Headers(), "opaque-token", {
      forwardedHeaders: rules,
      env: {},
    });

    expect(headers.get("x-user-id")).toBeNull();
    expect(headers.get("authorization")).toBe("Bearer opaque-token");
  });

  it("does not copy the Cookie header", () => {
    const headers = upstreamHeaders(
      new Headers({ Cookie: `id_token=${token}`, Host: "127.0.0.1:3000" }),
      token,
      { forwardedHeaders: rules, env: {} },
    );

    expect(headers.get("cookie")).toBeNull();
    expect(headers.get("host")).toBeNull();
  });
});

describe("toClientResponse", () => {
  it("returns no body for a HEAD request", async () => {
    const upstream = new Response("ignored", { status: 200 });

    const response = toClientResponse(upstream, "HEAD");

    expect(response.body).toBeNull();
  });

  it("keeps the status text", () => {
    const upstream = new Response("{}", {
      status: 409,
      statusText: "Conflict",
    });

    expect(toClientResponse(upstream, "POST").statusText).toBe("Conflict");
  });
});

describe("endToEndHeaders", () => {
  it("drops hop-by-hop headers and those the Connection header names", () => {
    const headers = endToEndHeaders({
      connection: "X-A , x-b",
      "keep-alive": "timeout=5",
      "transfer-encoding": "chunked",
      "x-a": "1",
      "x-b": "2",
      "x-c": "3",
      "content-type": "application/json",
    });

    expect([...headers.keys()].sort()).toEqual(["content-type", "x-c"]);
  });

  it("keeps each Set-Cookie header apart", () => {
    const headers = endToEndHeaders({ "set-cookie": ["a=1; Path=/", "b=2"] });

    expect(headers.getSetCookie()).toEqual(["a=1; Path=/", "b=2"]);
  });
});

describe("jsonError", () => {
  it("returns a JSON body with the message under error", async () => {
    const response = jsonError(502, "Backend down.");

    expect(response.status).toBe(502);
    expect(response.headers.get("content-type")).toMatch(/^application\/json/);
    expect(await response.json()).toEqual({ error: "Backend down." });
  });
});
