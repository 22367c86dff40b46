import { resolveForwardedHeaders, type HeaderRule } from "./headers";
import { decodeJwtPayload } from "./jwt";

/**
 * The server-side half of the app: takes the browser's request to /api/chatkit, reads the
 * httpOnly token cookie, and forwards the request to the ChatKit backend with
 * `Authorization: Bearer <token>`. Plain Request in, Response out, so it is tested
 * without starting Next.
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

/** Client headers passed on besides the configured ones: what the body needs. */
const PASSED_REQUEST_HEADERS = ["accept", "accept-language", "content-type"];

export interface ProxySettings {
  cookieName: string;
  upstreamUrl: string;
  upstreamPath: string;
  forwardedHeaders: readonly HeaderRule[];
  /** How long to wait for the backend's response headers; streams may run longer. */
  timeoutMs: number;
  env: Readonly<Record<string, string | undefined>>;
}

// Node's fetch needs `duplex` to send a streamed body; the DOM types lack it.
type StreamingRequestInit = RequestInit & { duplex?: "half" };

export async function proxyChatKitRequest(
  request: Request,
  settings: ProxySettings,
): Promise<Response> {
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

  const target = buildUpstreamUrl(
    settings.upstreamUrl,
    settings.upstreamPath,
    new URL(request.url).search,
  );
  const headers = buildUpstreamHeaders(request.headers, token, settings);
  const hasBody = request.method !== "GET" && request.method !== "HEAD";

  const controller = new AbortController();
  const abortUpstream = () => controller.abort();
  request.signal.addEventListener("abort", abortUpstream, { once: true });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    controller.abort();
  }, settings.timeoutMs);

  let upstream: Response;
  try {
    const init: StreamingRequestInit = {
      method: request.method,
      headers,
      body: hasBody ? request.body : undefined,
      duplex: hasBody ? "half" : undefined,
      redirect: "manual",
      cache: "no-store",
      signal: controller.signal,
    };
    upstream = await fetch(target, init);
  } catch (error) {
    request.signal.removeEventListener("abort", abortUpstream);
    return upstreamFailure(error, target, timedOut, settings.timeoutMs);
  } finally {
    clearTimeout(timer);
  }

  return toClientResponse(upstream, request.method);
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
): Headers {
  const headers = resolveForwardedHeaders(settings.forwardedHeaders, {
    clientHeaders,
    claims: decodeJwtPayload(token),
    env: settings.env,
  });

  for (const name of PASSED_REQUEST_HEADERS) {
    const value = clientHeaders.get(name);
    if (value !== null) {
      headers.set(name, value);
    }
  }
  headers.set("authorization", `Bearer ${token}`);
  return headers;
}

/**
 * Copies the backend's response for the browser: status, body and end-to-end headers.
 * fetch has already decoded the body, so Content-Encoding and Content-Length no longer
 * describe it and are dropped.
 */
export function toClientResponse(upstream: Response, method: string): Response {
  const headers = copyEndToEndHeaders(upstream.headers);
  headers.delete("content-encoding");
  headers.delete("content-length");

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

function copyEndToEndHeaders(source: Headers): Headers {
  const connectionNamed = (source.get("connection") ?? "")
    .split(",")
    .map((name) => name.trim().toLowerCase());
  const headers = new Headers();

  source.forEach((value, name) => {
    if (
      name === "set-cookie" ||
      HOP_BY_HOP_HEADERS.has(name) ||
      connectionNamed.includes(name)
    ) {
      return;
    }
    headers.append(name, value);
  });
  for (const cookie of source.getSetCookie()) {
    headers.append("set-cookie", cookie);
  }
  return headers;
}

function isEventStream(headers: Headers): boolean {
  return (headers.get("content-type") ?? "")
    .toLowerCase()
    .startsWith("text/event-stream");
}

function upstreamFailure(
  error: unknown,
  target: URL,
  timedOut: boolean,
  timeoutMs: number,
): Response {
  const where = `${target.origin}${target.pathname}`;
  if (timedOut) {
    console.error(LOG_TAG, "backend timed out", { upstream: where, timeoutMs });
    return jsonError(
      504,
      `The ChatKit backend did not answer within ${timeoutMs} ms.`,
    );
  }

  console.error(LOG_TAG, "backend unreachable", {
    upstream: where,
    reason: describeError(error),
  });
  return jsonError(502, "The ChatKit backend could not be reached.");
}

function describeError(error: unknown): string {
  if (!(error instanceof Error)) {
    return String(error);
  }
  const cause = error.cause;
  if (cause instanceof Error) {
    const code = (cause as NodeJS.ErrnoException).code;
    return code
      ? `${error.message}: ${code}`
      : `${error.message}: ${cause.message}`;
  }
  return error.message;
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
