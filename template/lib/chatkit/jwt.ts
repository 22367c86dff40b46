import { isUtf8 } from "node:buffer";

/**
 * Reads a JWT's payload without verifying its signature.
 *
 * The app only uses these claims to greet the user and to label requests; the ChatKit
 * backend receives the token itself as a Bearer header and must verify it.
 */
export type JwtClaims = Readonly<Record<string, unknown>>;

export function decodeJwtPayload(token: string): JwtClaims | null {
  const parts = token.split(".");
  if (parts.length !== 3 || parts[1] === "") {
    return null;
  }

  try {
    const payload: unknown = JSON.parse(decodeBase64Url(parts[1]));
    return isRecord(payload) ? payload : null;
  } catch {
    return null;
  }
}

/** The claims a page needs to show who is signed in, or null without a `sub`. */
export interface SignedInUser {
  id: string;
  name: string | null;
  email: string | null;
}

export function signedInUserFromClaims(
  claims: JwtClaims | null,
): SignedInUser | null {
  const id = claims?.sub;
  if (typeof id !== "string" || id === "") {
    return null;
  }
  return {
    id,
    name: typeof claims?.name === "string" ? claims.name : null,
    email: typeof claims?.email === "string" ? claims.email : null,
  };
}

function decodeBase64Url(segment: string): string {
  if (!/^[A-Za-z0-9_-]+={0,2}$/.test(segment)) {
    throw new SyntaxError("not base64url");
  }
  // Server-only (the page and the proxy): Buffer decodes base64url in one native call.
  // A payload that is not UTF-8 is no payload.
  const bytes = Buffer.from(segment, "base64url");
  if (!isUtf8(bytes)) {
    throw new SyntaxError("not UTF-8");
  }
  return bytes.toString("utf8");
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
