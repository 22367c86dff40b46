import { describe, expect, it } from "vitest";

import {
  isLoopbackHost,
  localhostDomainKey,
  resolveDomainKey,
} from "./domain-key";

const publicHost = "chat.example.com";

describe("resolveDomainKey", () => {
  it("uses the key from the environment in production", () => {
    const result = resolveDomainKey(
      { NODE_ENV: "production", NEXT_PUBLIC_CHATKIT_DOMAIN_KEY: "domain_pk_1" },
      publicHost,
    );

    expect(result).toEqual({ ok: true, value: "domain_pk_1" });
  });

  it("uses the key from the environment outside production", () => {
    const result = resolveDomainKey(
      {
        NODE_ENV: "development",
        NEXT_PUBLIC_CHATKIT_DOMAIN_KEY: "domain_pk_1",
      },
      "localhost:3000",
    );

    expect(result).toEqual({ ok: true, value: "domain_pk_1" });
  });

  it("trims white space around the key", () => {
    const result = resolveDomainKey(
      { NODE_ENV: "production", NEXT_PUBLIC_CHATKIT_DOMAIN_KEY: " pk_1\n" },
      publicHost,
    );

    expect(result).toEqual({ ok: true, value: "pk_1" });
  });

  it("uses the placeholder in development without a key", () => {
    const result = resolveDomainKey({ NODE_ENV: "development" }, publicHost);

    expect(result).toEqual({ ok: true, value: localhostDomainKey });
  });

  it("uses the placeholder when NODE_ENV is unset", () => {
    expect(resolveDomainKey({}, publicHost)).toEqual({
      ok: true,
      value: localhostDomainKey,
    });
  });

  it("treats a blank key as missing", () => {
    const result = resolveDomainKey(
      { NODE_ENV: "development", NEXT_PUBLIC_CHATKIT_DOMAIN_KEY: "   " },
      publicHost,
    );

    expect(result).toEqual({ ok: true, value: localhostDomainKey });
  });

  it("uses the placeholder in production on a loopback host", () => {
    const result = resolveDomainKey(
      { NODE_ENV: "production" },
      "127.0.0.1:3000",
    );

    expect(result).toEqual({ ok: true, value: localhostDomainKey });
  });

  it("returns an error naming the variable and host in production without a key", () => {
    const result = resolveDomainKey({ NODE_ENV: "production" }, publicHost);

    expect(result.ok).toBe(false);
    const error = result.ok ? "" : result.error;
    expect(error).toContain("NEXT_PUBLIC_CHATKIT_DOMAIN_KEY is not set");
    expect(error).toContain(publicHost);
  });

  it("returns an error in production with a blank key", () => {
    const result = resolveDomainKey(
      { NODE_ENV: "production", NEXT_PUBLIC_CHATKIT_DOMAIN_KEY: "" },
      publicHost,
    );

    expect(result.ok).toBe(false);
  });

  it("returns an error in production when the host is unknown", () => {
    const result = resolveDomainKey({ NODE_ENV: "production" }, "");

    expect(result.ok).toBe(false);
  });
});

describe("isLoopbackHost", () => {
  it.each([
    "localhost",
    "LOCALHOST:3000",
    "app.localhost",
    "127.0.0.1",
    "127.1.2.3:8080",
    "[::1]",
    "[::1]:3000",
    " localhost ",
  ])("accepts %j", (host) => {
    expect(isLoopbackHost(host)).toBe(true);
  });

  it.each([
    "",
    "example.com",
    "localhost.example.com",
    "127.0.0.1.example.com",
    "10.0.0.1",
    "[::2]",
    "0.0.0.0",
  ])("rejects %j", (host) => {
    expect(isLoopbackHost(host)).toBe(false);
  });
});
