import { pipeline, Readable, type Transform } from "node:stream";
import type { ReadableStream as NodeReadableStream } from "node:stream/web";
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
const BLANK_LINE = new TextEncoder().encode("\n\n");

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

  let requestBody: Uint8Array | AsyncIterable<Uint8Array> | null;
  try {
    requestBody = await readRequestBody(request);
  } catch (error) {
    if (request.signal.aborted) {
      return jsonError(499, "The request was cancelled.");
    }
    console.error(LOG_TAG, "the request body could not be read", {
      reason: describeError(error),
    });
    return jsonError(400, "The request body could not be read.");
  }

  let upstream: UpstreamResponse;
  try {
    upstream = await exchange(
      {
        // Origin and path as they are: the agent does not parse a URL again.
        origin: target.origin,
        path: target.pathname + target.search,
        method: request.method as Dispatcher.HttpMethod,
        headers: buildUpstreamHeaders(request.headers, token, settings),
        // undici takes any async iterable; its types list only Readable.
        body: requestBody as Dispatcher.DispatchOptions["body"],
        headersTimeout: settings.timeoutMs,
        bodyTimeout: 0,
      },
      request.signal,
      target,
    );
  } catch (error) {
    if (request.signal.aborted) {
      // The browser went away before the backend answered; nobody reads this.
      return jsonError(499, "The request was cancelled.");
    }
    return upstreamFailure(error, target, settings.timeoutMs);
  }

  const body = decodeBody(upstream, target, request.signal);
  if (body === null) {
    void upstream.body?.cancel();
    console.error(LOG_TAG, "backend used an unknown Content-Encoding", {
      upstream: describeTarget(target),
      contentEncoding: upstream.headers.get("content-encoding"),
    });
    return jsonError(
      502,
      "The ChatKit backend's response could not be decoded.",
    );
  }
  return toClientResponse({ ...upstream, body }, request.method);
}

/**
 * Sends one request to the backend and resolves with its response once the headers
 * are in. The body is a web stream fed straight from undici's parser, with
 * backpressure: undici pauses the connection while the browser is behind. The
 * browser going away (`clientGone`) or cancelling the body aborts the request.
 */
function exchange(
  options: Dispatcher.DispatchOptions,
  clientGone: AbortSignal,
  target: URL,
): Promise<UpstreamResponse> {
  return new Promise((resolve, reject) => {
    upstreamAgent.dispatch(
      options,
      new UpstreamHandler(resolve, reject, clientGone, target),
    );
  });
}

class UpstreamHandler implements Dispatcher.DispatchHandler {
  readonly #resolve: (response: UpstreamResponse) => void;
  readonly #reject: (error: Error) => void;
  readonly #clientGone: AbortSignal;
  readonly #target: URL;
  #dispatch: Dispatcher.DispatchController | null = null;
  #sink: ReadableStreamDefaultController<Uint8Array> | null = null;
  /** Whether a break gets the final ChatKit error event (identity event streams). */
  #endsWithErrorEvent = false;
  #settled = false;
  readonly #onClientGone = () => {
    this.#dispatch?.abort(abortReason(this.#clientGone));
  };

  constructor(
    resolve: (response: UpstreamResponse) => void,
    reject: (error: Error) => void,
    clientGone: AbortSignal,
    target: URL,
  ) {
    this.#resolve = resolve;
    this.#reject = reject;
    this.#clientGone = clientGone;
    this.#target = target;
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.#dispatch = controller;
    if (this.#clientGone.aborted) {
      controller.abort(abortReason(this.#clientGone));
    } else {
      this.#clientGone.addEventListener("abort", this.#onClientGone);
    }
  }

  onResponseStart(
    controller: Dispatcher.DispatchController,
    statusCode: number,
    rawHeaders: Record<string, string | string[] | undefined>,
    statusMessage?: string,
  ): void {
    if (statusCode < 200) {
      return; // 100 Continue and the like; the response proper follows
    }
    const headers = endToEndHeaders(rawHeaders);
    this.#endsWithErrorEvent =
      isEventStream(headers) &&
      contentCodings(headers.get("content-encoding")).length === 0;
    const body = new ReadableStream<Uint8Array>({
      start: (sink) => {
        this.#sink = sink;
      },
      pull: () => {
        controller.resume();
      },
      cancel: () => {
        // The browser stopped reading: stop the backend too, quietly.
        if (this.#finish()) {
          controller.abort(new Error("The browser cancelled the response."));
        }
      },
    });
    this.#resolve({
      status: statusCode,
      statusText: statusMessage,
      headers,
      body,
    });
  }

  onResponseData(
    controller: Dispatcher.DispatchController,
    chunk: Buffer,
  ): void {
    const sink = this.#sink;
    // undici can hand over empty chunks when resumed; passing them on would pause it
    // again at once, and the two would take turns for ever.
    if (sink === null || this.#settled || chunk.length === 0) {
      return;
    }
    sink.enqueue(chunk);
    if ((sink.desiredSize ?? 0) <= 0) {
      controller.pause(); // resumed by pull() when the browser has read it
    }
  }

  onResponseEnd(): void {
    if (this.#finish()) {
      this.#sink?.close();
    }
  }

  onResponseError(
    _controller: Dispatcher.DispatchController | undefined,
    error: Error,
  ): void {
    if (!this.#finish()) {
      return;
    }
    if (this.#sink === null) {
      this.#reject(error); // no response yet: 502, 504, or the browser left
    } else if (this.#clientGone.aborted) {
      this.#sink.error(error); // there is no one to tell
    } else {
      endBrokenBody(this.#sink, error, this.#endsWithErrorEvent, this.#target);
    }
  }

  /** Marks the exchange over; false if it already was. */
  #finish(): boolean {
    if (this.#settled) {
      return false;
    }
    this.#settled = true;
    this.#clientGone.removeEventListener("abort", this.#onClientGone);
    return true;
  }
}

function abortReason(signal: AbortSignal): Error {
  return signal.reason instanceof Error
    ? signal.reason
    : new Error("The browser went away.");
}

/**
 * Ends a response whose backend broke off. An event stream gets a final ChatKit error
 * event (after a blank line, which ends any half-sent event) and a clean end, so
 * ChatKit shows its retry prompt instead of waiting on a reply that will never
 * finish; any other body ends in an error, which cuts the response short, so a
 * partial JSON never looks complete.
 */
function endBrokenBody(
  sink: ReadableStreamDefaultController<Uint8Array>,
  error: unknown,
  eventStream: boolean,
  target: URL,
): void {
  console.error(LOG_TAG, "backend broke off its response", {
    upstream: describeTarget(target),
    reason: describeError(error),
  });
  if (!eventStream) {
    sink.error(error);
    return;
  }
  sink.enqueue(BLANK_LINE);
  sink.enqueue(STREAM_ERROR_EVENT);
  sink.close();
}

/**
 * Next drops Content-Encoding from a route's response and sends the body as given,
 * so a compressed body is decoded here (and its length header dropped with it);
 * Next compresses again for browsers that ask. Returns null for an encoding Node
 * cannot decode.
 */
function decodeBody(
  upstream: UpstreamResponse,
  target: URL,
  clientGone: AbortSignal,
): ReadableStream<Uint8Array> | null {
  const { headers, body } = upstream;
  const codings = contentCodings(headers.get("content-encoding"));
  if (codings.length === 0 || body === null) {
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
  // pipeline passes an error in any stage on to the last, where relayDecoded sees it.
  const decoded = decoders[decoders.length - 1];
  pipeline(
    [
      Readable.fromWeb(body as unknown as NodeReadableStream<Uint8Array>),
      ...decoders,
    ],
    () => {},
  );
  return relayDecoded(decoded, {
    eventStream: isEventStream(headers),
    target,
    clientGone,
  });
}

/** The codings of a Content-Encoding header, in the order they were applied. */
function contentCodings(value: string | null): string[] {
  return (value ?? "")
    .split(",")
    .map((coding) => coding.trim().toLowerCase())
    .filter((coding) => coding !== "" && coding !== "identity");
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
    // Decoding the token is skipped when no header is made from its claims.
    claims: settings.forwardedHeaders.some((rule) => rule.source === "claim")
      ? decodeJwtPayload(token)
      : null,
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

/** A decoded body as a web stream that reads on demand, ended as endBrokenBody says. */
function relayDecoded(
  decoded: Readable,
  options: { eventStream: boolean; target: URL; clientGone: AbortSignal },
): ReadableStream<Uint8Array> {
  const { eventStream, target, clientGone } = options;
  const chunks = decoded[Symbol.asyncIterator]();
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
        endBrokenBody(controller, error, eventStream, target);
      }
    },
    cancel() {
      cancelled = true;
      decoded.on("error", () => {}).destroy();
    },
  });
}

/**
 * Bodies up to this size (by their Content-Length) are read whole before the backend
 * is called, so they go out in the same write as the request headers; larger ones,
 * and bodies of unknown length, are streamed.
 */
export const WHOLE_BODY_MAX_BYTES = 64 * 1024;

/**
 * The request body as undici should send it: a small one read whole, anything else as
 * the web stream it is (an async iterable, which undici reads as it is: no Readable
 * between). Sent whole, a ChatKit message costs the backend one packet instead of two,
 * which shows in the time to the first streamed event.
 */
async function readRequestBody(
  request: Request,
): Promise<Uint8Array | AsyncIterable<Uint8Array> | null> {
  if (
    request.body === null ||
    request.method === "GET" ||
    request.method === "HEAD"
  ) {
    return null;
  }
  const length = request.headers.get("content-length");
  const expected = length === null ? NaN : Number(length);
  if (!(expected <= WHOLE_BODY_MAX_BYTES)) {
    return request.body as unknown as AsyncIterable<Uint8Array>;
  }

  // Node's HTTP parser ends the body at its Content-Length, so reading stops there
  // rather than waiting a turn for the stream's end (undici refuses to send a body
  // whose length differs from the header).
  const reader = request.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  while (total < expected) {
    const { done, value } = await reader.read();
    if (done) {
      break;
    }
    chunks.push(value);
    total += value.byteLength;
  }
  // The reader keeps its lock: nothing reads this body again, and releasing a lock on a
  // stream that has not ended makes a TypeError, stack and all, on every request.
  return chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, total);
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
