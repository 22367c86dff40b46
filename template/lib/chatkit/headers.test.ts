import { describe, expect, it } from "vitest";

import {
  resolveForwardedHeaders,
  toHeaderValue,
  type HeaderRule,
  type HeaderSources,
} from "./headers";

function sources(overrides: Partial<HeaderSources> = {}): HeaderSources {
  return { clientHeaders: new Headers(), claims: null, env: {}, ...overrides };
}

/** The resolved record as Headers, so the assertions read like the request's. */
function resolved(
  ...args: Parameters<typeof resolveForwardedHeaders>
): Headers {
  return new Headers(resolveForwardedHeaders(...args));
}

function entries(headers: Headers): [string, string][] {
  return [...headers.entries()];
}

describe("resolveForwardedHeaders", () => {
  it("returns no headers without rules", () => {
    const clientHeaders = new Headers({ "X-Page-URL": "http://127.0.0.1/" });

    const headers = resolved([], sources({ clientHeaders }));

    expect(entries(headers)).toEqual([]);
  });

  it("copies a client header that is listed", () => {
    const rules: HeaderRule[] = [{ name: "X-Page-URL", source: "client" }];
    const clientHeaders = new Headers({ "x-page-url": "http://127.0.0.1/a" });

    const headers = resolved(rules, sources({ clientHeaders }));

    expect(headers.get("X-Page-URL")).toBe("http://127.0.0.1/a");
  });

  it("does not copy client headers that are not listed", () => {
    const rules: HeaderRule[] = [{ name: "X-Page-URL", source: "client" }];
    const clientHeaders = new Headers({
      "X-Page-URL": "http://127.0.0.1/a",
      "X-Other": "secret",
      Cookie: "id_token=abc",
    });

    const headers = resolved(rules, sources({ clientHeaders }));

    expect(entries(headers)).toEqual([["x-page-url", "http://127.0.0.1/a"]]);
  });

  it("leaves out a client header the browser did not send", () => {
    const rules: HeaderRule[] = [{ name: "X-Page-URL", source: "client" }];

    const headers = resolved(rules, sources());

    expect(headers.has("X-Page-URL")).toBe(false);
  });

  it("takes a claim header from the token's payload", () => {
    const rules: HeaderRule[] = [
      { name: "X-User-ID", source: "claim", value: "sub" },
    ];

    const headers = resolved(rules, sources({ claims: { sub: "user-1" } }));

    expect(headers.get("X-User-ID")).toBe("user-1");
  });

  it("ignores a client header of the same name as a claim header", () => {
    const rules: HeaderRule[] = [
      { name: "X-User-ID", source: "claim", value: "sub" },
    ];
    const clientHeaders = new Headers({ "X-User-ID": "someone-else" });

    const headers = resolved(
      rules,
      sources({ clientHeaders, claims: { sub: "user-1" } }),
    );

    expect(headers.get("X-User-ID")).toBe("user-1");
  });

  it("leaves out a claim header when the claim is missing", () => {
    const rules: HeaderRule[] = [
      { name: "X-Tenant", source: "claim", value: "tenant" },
    ];

    const headers = resolved(rules, sources({ claims: { sub: "user-1" } }));

    expect(headers.has("X-Tenant")).toBe(false);
  });

  it("leaves out a claim header when there are no claims", () => {
    const rules: HeaderRule[] = [
      { name: "X-User-ID", source: "claim", value: "sub" },
    ];

    const headers = resolved(rules, sources({ claims: null }));

    expect(headers.has("X-User-ID")).toBe(false);
  });

  it("leaves out a claim header named after an Object.prototype member", () => {
    const rules: HeaderRule[] = [
      { name: "X-Ctor", source: "claim", value: "constructor" },
      { name: "X-Proto", source: "claim", value: "__proto__" },
    ];

    const headers = resolved(rules, sources({ claims: { sub: "user-1" } }));

    expect(entries(headers)).toEqual([]);
  });

  it("reads an env header from the environment at call time", () => {
    const rules: HeaderRule[] = [
      { name: "X-Api-Key", source: "env", value: "CHATKIT_API_KEY" },
    ];
    const env: Record<string, string | undefined> = {};

    const before = resolved(rules, sources({ env }));
    env.CHATKIT_API_KEY = "key-1";
    const first = resolved(rules, sources({ env }));
    env.CHATKIT_API_KEY = "key-2";
    const second = resolved(rules, sources({ env }));

    expect(before.has("X-Api-Key")).toBe(false);
    expect(first.get("X-Api-Key")).toBe("key-1");
    expect(second.get("X-Api-Key")).toBe("key-2");
  });

  it("leaves out an env header named after an Object.prototype member", () => {
    const rules: HeaderRule[] = [
      { name: "X-Env", source: "env", value: "toString" },
    ];

    const headers = resolved(rules, sources({ env: {} }));

    expect(headers.has("X-Env")).toBe(false);
  });

  it("sends a static header as written", () => {
    const rules: HeaderRule[] = [
      { name: "X-Client", source: "static", value: "chatkit-web/1.0" },
    ];

    const headers = resolved(rules, sources());

    expect(headers.get("X-Client")).toBe("chatkit-web/1.0");
  });

  it("resolves every source together", () => {
    const rules: HeaderRule[] = [
      { name: "X-Page-URL", source: "client" },
      { name: "X-User-ID", source: "claim", value: "sub" },
      { name: "X-Api-Key", source: "env", value: "CHATKIT_API_KEY" },
      { name: "X-Client", source: "static", value: "web" },
    ];

    const headers = resolved(rules, {
      clientHeaders: new Headers({ "X-Page-URL": "http://127.0.0.1/" }),
      claims: { sub: "user-1" },
      env: { CHATKIT_API_KEY: "key-1" },
    });

    expect(Object.fromEntries(headers)).toEqual({
      "x-page-url": "http://127.0.0.1/",
      "x-user-id": "user-1",
      "x-api-key": "key-1",
      "x-client": "web",
    });
  });
});

describe("toHeaderValue", () => {
  it("keeps a printable ASCII string", () => {
    expect(toHeaderValue("user-1 (admin)")).toBe("user-1 (admin)");
  });

  it("keeps a Latin-1 string", () => {
    expect(toHeaderValue("café")).toBe("café");
  });

  it("turns a number into its decimal text", () => {
    expect(toHeaderValue(42)).toBe("42");
  });

  it("turns zero into 0 rather than leaving it out", () => {
    expect(toHeaderValue(0)).toBe("0");
  });

  it("turns a boolean into its text", () => {
    expect(toHeaderValue(false)).toBe("false");
  });

  it("turns an object into JSON", () => {
    expect(toHeaderValue({ org: "acme", roles: ["admin"] })).toBe(
      '{"org":"acme","roles":["admin"]}',
    );
  });

  it("turns an array into JSON", () => {
    expect(toHeaderValue(["a", "b"])).toBe('["a","b"]');
  });

  it("percent-encodes a string with characters outside Latin-1", () => {
    expect(toHeaderValue("Zoë 李")).toBe("Zo%C3%AB%20%E6%9D%8E");
  });

  it("percent-encodes JSON with characters outside Latin-1", () => {
    expect(toHeaderValue({ name: "李" })).toBe(
      encodeURIComponent('{"name":"李"}'),
    );
  });

  it("percent-encodes CR and LF so no header can be injected", () => {
    expect(toHeaderValue("a\r\nX-Evil: 1")).toBe("a%0D%0AX-Evil%3A%201");
  });

  it("percent-encodes other control characters", () => {
    expect(toHeaderValue("a\u0000b\u007f")).toBe("a%00b%7F");
  });

  it("returns values that Headers accepts", () => {
    const values = ["Zoë 李", "a\r\nb", "a\u0000b", { name: "😀" }, 7];

    for (const value of values) {
      const text = toHeaderValue(value);
      expect(text).not.toBeNull();
      expect(() => new Headers({ "X-Test": text as string })).not.toThrow();
    }
  });

  it("returns null for an empty string", () => {
    expect(toHeaderValue("")).toBeNull();
  });

  it("returns null for undefined", () => {
    expect(toHeaderValue(undefined)).toBeNull();
  });

  it("returns null for null", () => {
    expect(toHeaderValue(null)).toBeNull();
  });
});
