import { describe, expect, it } from "vitest";

import {
  cookieName,
  defaultUpstreamUrl,
  forwardedHeaders,
  upstreamPath,
} from "./config";
import {
  ConfigurationError,
  defaultUpstreamTimeoutMs,
  loadProxySettings,
} from "./settings";

describe("loadProxySettings", () => {
  it("uses the rendered answers without environment variables", () => {
    const env = {};

    expect(loadProxySettings(env)).toEqual({
      cookieName,
      upstreamUrl: defaultUpstreamUrl,
      upstreamPath,
      forwardedHeaders,
      timeoutMs: defaultUpstreamTimeoutMs,
      allowedOrigins: [],
      env,
    });
  });

  it("waits 30 seconds by default", () => {
    expect(defaultUpstreamTimeoutMs).toBe(30_000);
  });

  it("keeps the environment it was given for the header rules", () => {
    const env = { CHATKIT_API_KEY: "key-1" };

    expect(loadProxySettings(env).env).toBe(env);
  });

  it("lets CHATKIT_UPSTREAM_URL override the default URL", () => {
    const settings = loadProxySettings({
      CHATKIT_UPSTREAM_URL: "http://127.0.0.1:9000/base",
    });

    expect(settings.upstreamUrl).toBe("http://127.0.0.1:9000/base");
  });

  it("trims white space around CHATKIT_UPSTREAM_URL", () => {
    const settings = loadProxySettings({
      CHATKIT_UPSTREAM_URL: "  https://127.0.0.1:9000  ",
    });

    expect(settings.upstreamUrl).toBe("https://127.0.0.1:9000");
  });

  it("uses the default URL when CHATKIT_UPSTREAM_URL is empty", () => {
    const settings = loadProxySettings({ CHATKIT_UPSTREAM_URL: "  " });

    expect(settings.upstreamUrl).toBe(defaultUpstreamUrl);
  });

  it.each([
    ["not a URL", "127.0.0.1:9000"],
    ["another scheme", "ftp://127.0.0.1/"],
    ["a query", "http://127.0.0.1:9000/?a=1"],
    ["a fragment", "http://127.0.0.1:9000/#top"],
    ["with a user name", "http://svc@127.0.0.1:9000/"],
    ["with a password", "http://svc:s3cret@127.0.0.1:9000/"],
  ])("rejects a CHATKIT_UPSTREAM_URL that is %s", (_label, value) => {
    expect(() => loadProxySettings({ CHATKIT_UPSTREAM_URL: value })).toThrow(
      ConfigurationError,
    );
  });

  it("reads CHATKIT_UPSTREAM_TIMEOUT_MS", () => {
    const settings = loadProxySettings({ CHATKIT_UPSTREAM_TIMEOUT_MS: "1500" });

    expect(settings.timeoutMs).toBe(1500);
  });

  it("accepts the longest timeout a timer can wait", () => {
    const settings = loadProxySettings({
      CHATKIT_UPSTREAM_TIMEOUT_MS: "2147483647",
    });

    expect(settings.timeoutMs).toBe(2_147_483_647);
  });

  it.each([
    ["not a number", "soon"],
    ["zero", "0"],
    ["negative", "-5"],
    ["fractional", "1.5"],
    ["longer than a timer can wait", "2147483648"],
    ["infinite", "Infinity"],
  ])("rejects a CHATKIT_UPSTREAM_TIMEOUT_MS that is %s", (_label, value) => {
    expect(() =>
      loadProxySettings({ CHATKIT_UPSTREAM_TIMEOUT_MS: value }),
    ).toThrow(ConfigurationError);
  });
});

it.each([
  ["CHATKIT_UPSTREAM_URL", "http://svc:s3cret@127.0.0.1:9000/"],
  ["CHATKIT_UPSTREAM_TIMEOUT_MS", "s3cret"],
  ["CHATKIT_ALLOWED_ORIGINS", "https://ok.example,s3cret"],
])("leaves an invalid %s's value out of the message", (variable, value) => {
  expect(() => loadProxySettings({ [variable]: value })).toThrow(
    new RegExp(`^${variable} is invalid: .*expected`),
  );
  try {
    loadProxySettings({ [variable]: value });
  } catch (error) {
    expect((error as Error).message).not.toContain("s3cret");
  }
});

describe("ConfigurationError", () => {
  it("names the variable and what was expected", () => {
    const error = new ConfigurationError("SOME_VAR", "expected z");

    expect(error.name).toBe("ConfigurationError");
    expect(error.message).toBe("SOME_VAR is invalid: expected z");
  });
});

describe("loadProxySettings allowed origins", () => {
  it("reads CHATKIT_ALLOWED_ORIGINS as a comma-separated list", () => {
    const env = {
      CHATKIT_ALLOWED_ORIGINS: " https://a.example , https://b.example:8443/ ",
    };

    expect(loadProxySettings(env).allowedOrigins).toEqual([
      "https://a.example",
      "https://b.example:8443",
    ]);
  });

  it.each(["a.example", "https://a.example/path", "https://a.example?x=1"])(
    "rejects %j in CHATKIT_ALLOWED_ORIGINS, naming the variable",
    (value) => {
      expect(() =>
        loadProxySettings({ CHATKIT_ALLOWED_ORIGINS: value }),
      ).toThrow(/CHATKIT_ALLOWED_ORIGINS/);
    },
  );

  it("says which entry of CHATKIT_ALLOWED_ORIGINS is not an origin", () => {
    expect(() =>
      loadProxySettings({
        CHATKIT_ALLOWED_ORIGINS: "https://a.example,, https://b.example/app",
      }),
    ).toThrow(
      /^CHATKIT_ALLOWED_ORIGINS is invalid: entry 3 of 3 is not an origin/,
    );
  });
});
