import type { JwtClaims } from "./jwt";

/**
 * One header the proxy sends the backend:
 * - `client`: copied from the browser's request header of the same name;
 * - `claim`: the named claim of the token's payload, so the browser cannot spoof it;
 * - `env`: the named server-side environment variable, read per request;
 * - `static`: the value as written.
 */
export type HeaderRule =
  | { readonly name: string; readonly source: "client" }
  | {
      readonly name: string;
      readonly source: "claim" | "env" | "static";
      readonly value: string;
    };

export interface HeaderSources {
  clientHeaders: Headers;
  claims: JwtClaims | null;
  env: Readonly<Record<string, string | undefined>>;
}

/** Header names (lower case) to values, as the backend request takes them. */
export type HeaderRecord = Record<string, string>;

/**
 * Resolves each rule to a header value; rules without a value are left out. A plain
 * record rather than Headers: undici validates what it sends, and building a Headers
 * object per request only to copy it out again is measurable.
 */
export function resolveForwardedHeaders(
  rules: readonly HeaderRule[],
  { clientHeaders, claims, env }: HeaderSources,
): HeaderRecord {
  const headers: HeaderRecord = {};

  for (const rule of rules) {
    const value = resolveRule(rule, clientHeaders, claims, env);
    if (value !== null) {
      headers[rule.name.toLowerCase()] = value;
    }
  }

  return headers;
}

function resolveRule(
  rule: HeaderRule,
  clientHeaders: Headers,
  claims: JwtClaims | null,
  env: Readonly<Record<string, string | undefined>>,
): string | null {
  switch (rule.source) {
    case "client":
      return clientHeaders.get(rule.name);
    case "claim":
      return toHeaderValue(ownValue(claims, rule.value));
    case "env":
      return toHeaderValue(ownValue(env, rule.value));
    case "static":
      return rule.value;
  }
}

/** Only the record's own keys, so a name such as `constructor` finds nothing. */
function ownValue(
  record: Readonly<Record<string, unknown>> | null,
  key: string,
): unknown {
  return record !== null && Object.hasOwn(record, key)
    ? record[key]
    : undefined;
}

/**
 * Turns a claim or variable into a header value. Strings that a header cannot carry
 * (characters outside Latin-1, or control characters) are sent percent-encoded as
 * UTF-8; objects and arrays as JSON; absent values are left out.
 */
export function toHeaderValue(value: unknown): string | null {
  if (value === undefined || value === null || value === "") {
    return null;
  }

  const text = typeof value === "string" ? value : JSON.stringify(value);
  const unsafe = /[^\x20-\x7e\x80-\xff\t]/;
  return unsafe.test(text) ? encodeURIComponent(text) : text;
}
