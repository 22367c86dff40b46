import { describe, expect, it } from "vitest";

import { decodeJwtPayload, signedInUserFromClaims } from "./jwt";

const header = "eyJhbGciOiJub25lIn0";

function segment(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString("base64url");
}

function tokenWith(payloadSegment: string): string {
  return `${header}.${payloadSegment}.signature`;
}

describe("decodeJwtPayload", () => {
  it("returns the payload's claims", () => {
    const claims = { sub: "user-1", email: "ada@example.com", admin: true };

    expect(decodeJwtPayload(tokenWith(segment(claims)))).toEqual(claims);
  });

  it("decodes UTF-8 names", () => {
    const claims = { sub: "user-1", name: "Zoë 李雷 😀" };

    expect(decodeJwtPayload(tokenWith(segment(claims)))).toEqual(claims);
  });

  it("decodes the base64url characters - and _", () => {
    const claims = { sub: "u-1", note: "~~~???" };
    const payload = segment(claims);
    expect(payload).toContain("-");
    expect(payload).toContain("_");

    expect(decodeJwtPayload(tokenWith(payload))).toEqual(claims);
  });

  it("decodes a payload without padding", () => {
    const claims = { sub: "user-1", name: "Ada" };
    const payload = segment(claims);
    expect(payload.length % 4).not.toBe(0);
    expect(payload).not.toContain("=");

    expect(decodeJwtPayload(tokenWith(payload))).toEqual(claims);
  });

  it("decodes a payload with padding", () => {
    const claims = { sub: "user-1", name: "Ada" };
    const payload = Buffer.from(JSON.stringify(claims)).toString("base64");
    expect(payload).toMatch(/=$/);

    expect(decodeJwtPayload(tokenWith(payload))).toEqual(claims);
  });

  it("rejects a token with two parts", () => {
    expect(decodeJwtPayload(`${header}.${segment({ sub: "u" })}`)).toBeNull();
  });

  it("rejects a token with four parts", () => {
    const token = `${header}.${segment({ sub: "u" })}.sig.extra`;

    expect(decodeJwtPayload(token)).toBeNull();
  });

  it("rejects a token with an empty payload", () => {
    expect(decodeJwtPayload(`${header}..signature`)).toBeNull();
  });

  it("rejects an empty string", () => {
    expect(decodeJwtPayload("")).toBeNull();
  });

  it("rejects a payload that is not base64", () => {
    expect(decodeJwtPayload(tokenWith("not*base64!"))).toBeNull();
  });

  it("rejects a payload with an impossible base64 length", () => {
    expect(decodeJwtPayload(tokenWith("abcde"))).toBeNull();
  });

  it("rejects a payload that is not UTF-8", () => {
    const payload = Buffer.from([0x7b, 0xff, 0xfe, 0x7d]).toString("base64url");

    expect(decodeJwtPayload(tokenWith(payload))).toBeNull();
  });

  it("rejects a payload that is not JSON", () => {
    const payload = Buffer.from("sub=user-1").toString("base64url");

    expect(decodeJwtPayload(tokenWith(payload))).toBeNull();
  });

  it.each([
    ["an array", [1, 2]],
    ["a number", 42],
    ["a string", "user-1"],
    ["null", null],
    ["a boolean", true],
  ])("rejects a JSON payload that is %s", (_label, value) => {
    expect(decodeJwtPayload(tokenWith(segment(value)))).toBeNull();
  });
});

describe("signedInUserFromClaims", () => {
  it("returns the id, name and email", () => {
    const claims = { sub: "user-1", name: "Ada", email: "ada@example.com" };

    expect(signedInUserFromClaims(claims)).toEqual({
      id: "user-1",
      name: "Ada",
      email: "ada@example.com",
    });
  });

  it("returns null name and email when the claims lack them", () => {
    expect(signedInUserFromClaims({ sub: "user-1" })).toEqual({
      id: "user-1",
      name: null,
      email: null,
    });
  });

  it("returns null name and email when they are not strings", () => {
    const claims = { sub: "user-1", name: { first: "Ada" }, email: 7 };

    expect(signedInUserFromClaims(claims)).toEqual({
      id: "user-1",
      name: null,
      email: null,
    });
  });

  it("returns null without claims", () => {
    expect(signedInUserFromClaims(null)).toBeNull();
  });

  it("returns null without a sub", () => {
    expect(signedInUserFromClaims({ name: "Ada" })).toBeNull();
  });

  it("returns null when the sub is not a string", () => {
    expect(signedInUserFromClaims({ sub: 12345 })).toBeNull();
  });

  it("returns null when the sub is empty", () => {
    expect(signedInUserFromClaims({ sub: "" })).toBeNull();
  });
});
