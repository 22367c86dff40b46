import { pipeline, type Readable, type Transform } from "node:stream";
import { createBrotliDecompress, createGunzip, createInflate } from "node:zlib";

import { Agent, type Dispatcher } from "undici";

import {
  resolveForwardedHeaders,
  type HeaderRecord,
  type HeaderRule,
} from "./headers";
import { decodeJwtPayload } from "./jwt";

/**
 * The server-side half of the app: takes the browser's request to /api/chatkit (or a
 * path below it), reads the httpOnly token cookie, and forwards the request to the
 * ChatKit backend with `Authorization: Bearer <token>`. Plain Request in, Response
 * out, so it is tested without starting Next.
 */

export const LOG_TAG = "[chatkit-proxy]";

/** Headers that describe one connection and never cross a proxy (RFC 9110 §7.6.1). */
const HOP_BY_HOP_HEADERS = new Set([
  "connection",
  "keep-alive",
  "proxy-authenticate",
  "proxy-authorization",
  "proxy-connection",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
]);

/**
 * Client headers passed on besides the configured ones: what the body needs, and what
 * the reply should be. The body is sent unchanged, so its length stays true.
 */
const PASSED_REQUEST_HEADERS = [
  "accept",
  "accept-language",
  "content-encoding",
  "content-length",
  "content-type",
];

/**
 * Sent as the last event when the backend's stream breaks, so ChatKit shows its retry
 * prompt instead of waiting on a reply that will never finish.
 */
const STREAM_ERROR_EVENT = new TextEncoder().encode(
  'data: {"type":"error","code":"stream.error","allow_retry":true}\n\n',
);

/**
 * One connection pool for every backend request. Body timeouts are off: a ChatKit
 * stream may stay quiet for minutes while a tool runs, and only the browser going
 * away should end it. Waiting for the response headers is bounded per request.
 */
const upstreamAgent = new Agent({ bodyTimeout: 0, keepAliveTimeout: 30_000 });

export interface ProxySettings {
  cookieName: string;
  upstreamUrl: string;
  upstreamPath: string;
  forwardedHeaders: readonly HeaderRule[];
  /** How long to wait for the backend's response headers once the request is sent. */
  timeoutMs: number;
  /** Origins besides the app's own whose pages may call the proxy with the cookie. */
  allowedOrigins: readonly string[];
  env: Readonly<Record<string, string | undefined>>;
}

/** The parts of a backend response that the browser's response is made from. */
export interface UpstreamResponse {
  status: number;
  statusText?: string;
  headers: Headers;
  body: ReadableStream<Uint8Array> | null;
}

export async function proxyChatKitRequest(
  request: Request,
  settings: ProxySettings,
  subpath: readonly string[] = [],
): Promise<Response> {
  if (!isAllowedOrigin(request, settings.allowedOrigins)) {
    return jsonError(
      403,
      "Cross-site requests to the ChatKit proxy are refused.",
    );
  }

  const token = readTokenCookie(
    request.headers.get("cookie"),
    settings.cookieName,
  );
  if (token === null) {
    return jsonError(
      401,
      `Not signed in: the ${settings.cookieName} cookie is missing.`,
    );
  }

  const path = encodeSubpath(subpath);
  if (path === null) {
    return jsonError(400, "The path below /api/chatkit is not allowed.");
  }
  const target = buildUpstreamUrl(
    settings.upstreamUrl,
    settings.upstreamPath + path,
    searchOf(request.url),
  );

  let upstream: Dispatcher.ResponseData;
  try {
    // The agent's own request() takes origin and path as they are, where the
    // top-level request(url) would parse the URL a second time.
    upstream = await upstreamAgent.request({
      origin: target.origin,
      path: target.pathname + target.search,
      method: request.method as Dispatcher.HttpMethod,
      headers: buildUpstreamHeaders(request.headers, token, settings),
      // undici takes any async iterable; its types list only Readable.
      body: requestBody(request) as Dispatcher.DispatchOptions["body"],
      signal: request.signal,
      headersTimeout: settings.timeoutMs,
      bodyTimeout: 0,
    });
  } catch (error) {
    if (request.signal.aborted) {
      // The browser went away before the backend answered; nobody reads this.
      return jsonError(499, "The request was cancelled.");
    }
    return upstreamFailure(error, target, settings.timeoutMs);
  }

  const headers = endToEndHeaders(upstream.headers);
  const body = decodeBody(upstream.body, headers);
  if (body === null) {
    upstream.body.on("error", () => {}).destroy();
    console.error(LOG_TAG, "backend used an unknown Content-Encoding", {
      upstream: describeTarget(target),
      contentEncoding: headers.get("content-encoding"),
    });
    return jsonError(
      502,
      "The ChatKit backend's response could not be decoded.",
    );
  }

  return toClientResponse(
    {
      status: upstream.statusCode,
      statusText: upstream.statusText,
      headers,
      body: relayBody(body, {
        eventStream: isEventStream(headers),
        target,
        clientGone: request.signal,
      }),
    },
    request.method,
  );
}

/**
 * Next drops Content-Encoding from a route's response and sends the body as given,
 * so a compressed body is decoded here (and its length header dropped with it);
 * Next compresses again for browsers that ask. Returns null for an encoding Node
 * cannot decode.
 */
function decodeBody(body: Readable, headers: Headers): Readable | null {
  const codings = (headers.get("content-encoding") ?? "")
    .split(",")
    .map((coding) => coding.trim().toLowerCase())
    .filter((coding) => coding !== "" && coding !== "identity");
  if (codings.length === 0) {
    return body;
  }

  const decoders: Transform[] = [];
  for (const coding of codings.reverse()) {
    const decoder = createDecoder(coding);
    if (decoder === null) {
      return null;
    }
    decoders.push(decoder);
  }
  headers.delete("content-encoding");
  headers.delete("content-length");
  // pipeline passes an error in any stage on to the last, where relayBody sees it.
  const decoded = decoders[decoders.length - 1];
  pipeline([body, ...decoders], () => {});
  return decoded;
}

function createDecoder(coding: string): Transform | null {
  switch (coding) {
    case "gzip":
    case "x-gzip":
      return createGunzip();
    case "deflate":
      return createInflate();
    case "br":
      return createBrotliDecompress();
    default:
      return null;
  }
}

/**
 * Refuses a browser request made from another site's page, which would carry the
 * user's cookie without the user meaning it (CSRF). Browsers send Origin on every
 * cross-origin request and Sec-Fetch-Site on every request; a client that sends
 * neither is not a browser and has to hold the cookie to be let through.
 */
export function isAllowedOrigin(
  request: Request,
  allowedOrigins: readonly string[],
): boolean {
  const origin = request.headers.get("origin");
  if (origin !== null) {
    return (
      ownOrigins(request).includes(origin) || allowedOrigins.includes(origin)
    );
  }
  const site = request.headers.get("sec-fetch-site");
  return site === null || site === "same-origin" || site === "none";
}

function ownOrigins(request: Request): string[] {
  const url = new URL(request.url);
  const origins = [url.origin];
  const host =
    request.headers.get("x-forwarded-host") ?? request.headers.get("host");
  if (host) {
    const proto =
      request.headers.get("x-forwarded-proto") ?? url.protocol.slice(0, -1);
    origins.push(
      `${proto.split(",")[0].trim()}://${host.split(",")[0].trim()}`,
    );
  }
  return origins;
}

/** Finds the named cookie in a Cookie header; quoted and percent-encoded values are read as browsers send them. */
export function readTokenCookie(
  cookieHeader: string | null,
  name: string,
): string | null {
  if (!cookieHeader) {
    return null;
  }

  for (const pair of cookieHeader.split(";")) {
    const separator = pair.indexOf("=");
    if (separator === -1 || pair.slice(0, separator).trim() !== name) {
      continue;
    }
    let value = pair.slice(separator + 1).trim();
    if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) {
      value = value.slice(1, -1);
    }
    const token = safeDecodeURIComponent(value);
    // A token must fit in the Authorization header: visible ASCII only.
    return /^[\x21-\x7e]+$/.test(token) ? token : null;
  }
  return null;
}

/**
 * Turns the route's path segments (already percent-decoded by Next) into a path that
 * stays below the ChatKit endpoint: each segment is encoded again, and one that could
 * climb out (`.`, `..`, or holding a slash or backslash) refuses the whole path.
 */
export function encodeSubpath(segments: readonly string[]): string | null {
  let path = "";
  for (const segment of segments) {
    if (/^\.{0,2}$|[/\\\x00-\x1f\x7f]/.test(segment)) {
      return null;
    }
    path += `/${encodeURIComponent(segment)}`;
  }
  return path;
}

/** The query string of a URL, with its `?`, without parsing the rest. */
function searchOf(url: string): string {
  const start = url.indexOf("?");
  if (start === -1) {
    return "";
  }
  const end = url.indexOf("#", start);
  return end === -1 ? url.slice(start) : url.slice(start, end);
}

/** Appends the ChatKit path to the base URL, keeping any path prefix on it. */
export function buildUpstreamUrl(
  baseUrl: string,
  upstreamPath: string,
  search: string,
): URL {
  const url = new URL(baseUrl);
  url.pathname = url.pathname.replace(/\/+$/, "") + upstreamPath;
  url.search = search;
  url.hash = "";
  return url;
}

export function buildUpstreamHeaders(
  clientHeaders: Headers,
  token: string,
  settings: Pick<ProxySettings, "forwardedHeaders" | "env">,
): HeaderRecord {
  const headers = resolveForwardedHeaders(settings.forwardedHeaders, {
    clientHeaders,
    claims: decodeJwtPayload(token),
    env: settings.env,
  });

  for (const name of PASSED_REQUEST_HEADERS) {
    const value = clientHeaders.get(name);
    if (value !== null) {
      headers[name] = value;
    }
  }
  headers.authorization = `Bearer ${token}`;
  return headers;
}

/** Makes the browser's response from the backend's: status, body and end-to-end headers. */
export function toClientResponse(
  upstream: UpstreamResponse,
  method: string,
): Response {
  const headers = upstream.headers;

  if (isEventStream(upstream.headers)) {
    // no-transform keeps Next's compression, and any CDN, from buffering the stream.
    headers.set("cache-control", "no-cache, no-transform");
    headers.set("x-accel-buffering", "no");
  }

  const bodyless =
    method === "HEAD" || [204, 205, 304].includes(upstream.status);
  if (bodyless) {
    void upstream.body?.cancel();
  }
  return new Response(bodyless ? null : upstream.body, {
    status: upstream.status,
    statusText: upstream.statusText,
    headers,
  });
}

/** The backend's headers less those that describe its connection to us. */
export function endToEndHeaders(
  source: Record<string, string | string[] | undefined>,
): Headers {
  const connectionNamed = String(source.connection ?? "")
    .split(",")
    .map((name) => name.trim().toLowerCase());
  const headers = new Headers();

  for (const [name, value] of Object.entries(source)) {
    if (
      value === undefined ||
      HOP_BY_HOP_HEADERS.has(name) ||
      connectionNamed.includes(name)
    ) {
      continue;
    }
    // Node lists each Set-Cookie apart; append keeps them apart.
    for (const item of Array.isArray(value) ? value : [value]) {
      headers.append(name, item);
    }
  }
  return headers;
}

/**
 * The backend's body as a web stream that reads on demand, so a slow browser slows
 * the backend down instead of filling memory. The browser going away destroys the
 * backend connection. If the backend breaks off an event stream, the browser gets a
 * final ChatKit error event (after a blank line, which ends any half-sent event)
 * and a clean end; any other body ends in an error, which cuts the response short.
 */
function relayBody(
  body: Readable,
  options: { eventStream: boolean; target: URL; clientGone: AbortSignal },
): ReadableStream<Uint8Array> {
  const { eventStream, target, clientGone } = options;
  const chunks = body[Symbol.asyncIterator]();
  let cancelled = false;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const { value, done } = await chunks.next();
        if (done) {
          controller.close();
        } else {
          controller.enqueue(value as Uint8Array);
        }
      } catch (error) {
        if (cancelled || clientGone.aborted) {
          return; // the browser left first; there is no one to tell
        }
        console.error(LOG_TAG, "backend broke off its response", {
          upstream: describeTarget(target),
          reason: describeError(error),
        });
        if (!eventStream) {
          controller.error(error);
          return;
        }
        controller.enqueue(new TextEncoder().encode("\n\n"));
        controller.enqueue(STREAM_ERROR_EVENT);
        controller.close();
      }
    },
    cancel() {
      cancelled = true;
      // Destroying an unfinished body makes undici emit an abort error; it is ours.
      body.on("error", () => {});
      body.destroy();
    },
  });
}

function requestBody(request: Request): AsyncIterable<Uint8Array> | null {
  if (
    request.body === null ||
    request.method === "GET" ||
    request.method === "HEAD"
  ) {
    return null;
  }
  // A web stream is an async iterable, which undici reads as it is: no Readable between.
  return request.body as unknown as AsyncIterable<Uint8Array>;
}

function isEventStream(headers: Headers): boolean {
  return (headers.get("content-type") ?? "")
    .toLowerCase()
    .startsWith("text/event-stream");
}

function upstreamFailure(
  error: unknown,
  target: URL,
  timeoutMs: number,
): Response {
  const upstream = describeTarget(target);
  const code = errorCode(error);
  if (code === "UND_ERR_HEADERS_TIMEOUT") {
    console.error(LOG_TAG, "backend timed out", { upstream, timeoutMs });
    return jsonError(
      504,
      `The ChatKit backend did not answer within ${timeoutMs} ms.`,
    );
  }
  console.error(LOG_TAG, "backend unreachable", {
    upstream,
    reason: describeError(error),
  });
  return jsonError(502, "The ChatKit backend could not be reached.");
}

/** The backend URL without its query string, which may carry secrets. */
function describeTarget(target: URL): string {
  return `${target.origin}${target.pathname}`;
}

function errorCode(error: unknown): string | undefined {
  if (typeof error === "object" && error !== null && "code" in error) {
    return String(error.code);
  }
  return undefined;
}

function describeError(error: unknown): string {
  if (!(error instanceof Error)) {
    return String(error);
  }
  const code = errorCode(error);
  return code ? `${error.message} (${code})` : error.message;
}

export function jsonError(status: number, message: string): Response {
  return Response.json({ error: message }, { status });
}

function safeDecodeURIComponent(value: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}
