import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";

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

import { cookieName, upstreamPath } from "./config";
import { handleChatKitRequest } from "./handler";

interface Received {
  url: string;
  headers: IncomingHttpHeaders;
}

let server: Server;
let upstreamUrl: string;
let received: Received[] = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    received.push({ url: req.url ?? "", headers: req.headers });
    req.resume();
    req.on("end", () => {
      res.writeHead(200, { "Content-Type": "application/json" });
      res.end(JSON.stringify({ ok: true }));
    });
  });
  await new Promise<void>((resolve) =>
    server.listen(0, "127.0.0.1", () => resolve()),
  );
  upstreamUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

let consoleError: ReturnType<typeof vi.spyOn>;

beforeEach(() => {
  received = [];
  consoleError = vi.spyOn(console, "error").mockImplementation(() => {});
});

afterEach(() => {
  vi.restoreAllMocks();
});

const token = [
  "eyJhbGciOiJub25lIn0",
  Buffer.from(JSON.stringify({ sub: "user-1" })).toString("base64url"),
  "signature",
].join(".");

function chatRequest(): Request {
  return new Request("http://127.0.0.1:3000/api/chatkit?stream=1", {
    method: "POST",
    headers: {
      "Content-Type": "application/json",
      Cookie: `${cookieName}=${encodeURIComponent(token)}`,
    },
    body: JSON.stringify({ type: "threads.list", params: {} }),
  });
}

describe("handleChatKitRequest", () => {
  it("follows a change to CHATKIT_UPSTREAM_URL in the same environment", async () => {
    const env: Record<string, string | undefined> = {
      CHATKIT_UPSTREAM_URL: `${upstreamUrl}/first`,
    };
    await handleChatKitRequest(chatRequest(), env);
    env.CHATKIT_UPSTREAM_URL = `${upstreamUrl}/second`;

    await handleChatKitRequest(chatRequest(), env);

    expect(received.map((request) => request.url)).toEqual([
      `/first${upstreamPath}?stream=1`,
      `/second${upstreamPath}?stream=1`,
    ]);
  });

  it("proxies to CHATKIT_UPSTREAM_URL instead of the default", async () => {
    const response = await handleChatKitRequest(chatRequest(), {
      CHATKIT_UPSTREAM_URL: `${upstreamUrl}/override/`,
    });

    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ ok: true });
    expect(received).toHaveLength(1);
    expect(received[0].url).toBe(`/override${upstreamPath}?stream=1`);
    expect(received[0].headers.authorization).toBe(`Bearer ${token}`);
  });

  it("returns 500 JSON naming CHATKIT_UPSTREAM_URL when it is invalid", async () => {
    const response = await handleChatKitRequest(chatRequest(), {
      CHATKIT_UPSTREAM_URL: "not a url",
    });

    expect(response.status).toBe(500);
    const body = await response.json();
    expect(Object.keys(body)).toEqual(["error"]);
    expect(body.error).toContain("CHATKIT_UPSTREAM_URL");
    expect(received).toHaveLength(0);
  });

  it("returns 500 JSON naming CHATKIT_UPSTREAM_TIMEOUT_MS when it is invalid", async () => {
    const response = await handleChatKitRequest(chatRequest(), {
      CHATKIT_UPSTREAM_URL: upstreamUrl,
      CHATKIT_UPSTREAM_TIMEOUT_MS: "ten seconds",
    });

    expect(response.status).toBe(500);
    const body = await response.json();
    expect(Object.keys(body)).toEqual(["error"]);
    expect(body.error).toContain("CHATKIT_UPSTREAM_TIMEOUT_MS");
    expect(received).toHaveLength(0);
  });

  it("logs the configuration error", async () => {
    await handleChatKitRequest(chatRequest(), {
      CHATKIT_UPSTREAM_TIMEOUT_MS: "-1",
    });

    expect(consoleError).toHaveBeenCalledWith(
      "[chatkit-proxy]",
      expect.stringContaining("CHATKIT_UPSTREAM_TIMEOUT_MS"),
    );
  });

  it("returns 401 without calling the backend when the cookie is missing", async () => {
    const response = await handleChatKitRequest(
      new Request("http://127.0.0.1:3000/api/chatkit", { method: "POST" }),
      { CHATKIT_UPSTREAM_URL: upstreamUrl },
    );

    expect(response.status).toBe(401);
    expect(received).toHaveLength(0);
  });
});
