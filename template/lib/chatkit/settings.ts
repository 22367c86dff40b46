import {
  cookieName,
  defaultUpstreamUrl,
  forwardedHeaders,
  upstreamPath,
} from "./config";
import type { ProxySettings } from "./proxy";

/** Wait this long for the backend's response headers unless the environment says otherwise. */
export const defaultUpstreamTimeoutMs = 30_000;

/** The longest delay a Node timer (undici's included) can wait. */
const maxTimeoutMs = 2_147_483_647;

/**
 * A server environment variable holds a value the proxy cannot use. The message names
 * the variable and what it should hold, never the value: it is the body of the 500
 * that any caller gets, and a URL may carry a password.
 */
export class ConfigurationError extends Error {
  constructor(variable: string, expected: string) {
    super(`${variable} is invalid: ${expected}`);
    this.name = "ConfigurationError";
  }
}

/**
 * The proxy's settings for one request. Environment variables are read at request time,
 * so a built app can be pointed at another backend without rebuilding:
 * 1. CHATKIT_UPSTREAM_URL, else the rendered `upstream_url` answer;
 * 2. CHATKIT_UPSTREAM_TIMEOUT_MS, else 30 seconds;
 * 3. CHATKIT_ALLOWED_ORIGINS, a comma-separated list, else only the app's own origin.
 */
export function loadProxySettings(
  env: Readonly<Record<string, string | undefined>>,
): ProxySettings {
  return {
    cookieName,
    upstreamUrl: readUpstreamUrl(env),
    upstreamPath,
    forwardedHeaders,
    timeoutMs: readTimeoutMs(env),
    allowedOrigins: readAllowedOrigins(env),
    env,
  };
}

function readUpstreamUrl(
  env: Readonly<Record<string, string | undefined>>,
): string {
  const value = env.CHATKIT_UPSTREAM_URL?.trim();
  if (!value) {
    return defaultUpstreamUrl;
  }

  let url: URL | null = null;
  try {
    url = new URL(value);
  } catch {
    // reported below
  }
  if (
    !url ||
    !["http:", "https:"].includes(url.protocol) ||
    url.username ||
    url.password ||
    url.search ||
    url.hash
  ) {
    throw new ConfigurationError(
      "CHATKIT_UPSTREAM_URL",
      "expected an http(s) URL without credentials, query or fragment, such as https://api.example.com",
    );
  }
  return value;
}

function readTimeoutMs(
  env: Readonly<Record<string, string | undefined>>,
): number {
  const value = env.CHATKIT_UPSTREAM_TIMEOUT_MS?.trim();
  if (!value) {
    return defaultUpstreamTimeoutMs;
  }

  const timeoutMs = Number(value);
  // A timer set for longer than 2^31 - 1 ms fires at once.
  if (
    !Number.isInteger(timeoutMs) ||
    timeoutMs <= 0 ||
    timeoutMs > maxTimeoutMs
  ) {
    throw new ConfigurationError(
      "CHATKIT_UPSTREAM_TIMEOUT_MS",
      `expected a whole number of milliseconds up to ${maxTimeoutMs}, such as 30000`,
    );
  }
  return timeoutMs;
}

function readAllowedOrigins(
  env: Readonly<Record<string, string | undefined>>,
): string[] {
  const value = env.CHATKIT_ALLOWED_ORIGINS?.trim();
  if (!value) {
    return [];
  }

  const entries = value.split(",");
  const origins: string[] = [];
  entries.forEach((entry, index) => {
    const item = entry.trim();
    if (item === "") {
      return;
    }
    let origin: string | null = null;
    try {
      origin = new URL(item).origin;
    } catch {
      // reported below
    }
    if (
      origin === null ||
      origin === "null" ||
      origin !== item.replace(/\/$/, "")
    ) {
      // The entry's place in the list, not its text: see ConfigurationError.
      throw new ConfigurationError(
        "CHATKIT_ALLOWED_ORIGINS",
        `entry ${index + 1} of ${entries.length} is not an origin (scheme://host[:port]); ` +
          "expected comma-separated origins such as https://app.example.com,https://admin.example.com",
      );
    }
    origins.push(origin);
  });
  return origins;
}
