/**
 * ChatKit checks that the page's domain is registered for its domain key. A page served
 * from this machine needs no registered domain, so a placeholder stands in there: the
 * first `npm run dev`, or `npm run build && npm start`, works without a key, and a
 * deployment without one says so instead of showing a blank chat.
 */
export const localhostDomainKey = "domain_pk_localhost_development_placeholder";

export type DomainKeyResult =
  { ok: true; value: string } | { ok: false; error: string };

export function resolveDomainKey(
  env: Readonly<Record<string, string | undefined>>,
  hostname: string,
): DomainKeyResult {
  const key = env.NEXT_PUBLIC_CHATKIT_DOMAIN_KEY?.trim();
  if (key) {
    return { ok: true, value: key };
  }
  if (env.NODE_ENV !== "production" || isLoopbackHost(hostname)) {
    return { ok: true, value: localhostDomainKey };
  }
  return {
    ok: false,
    error:
      "NEXT_PUBLIC_CHATKIT_DOMAIN_KEY is not set. Register this site's domain " +
      `(${hostname}) with OpenAI, set the variable to its domain key, and restart the app.`,
  };
}

/** Whether a Host header (port included or not) names this machine. */
export function isLoopbackHost(host: string): boolean {
  const name = host
    .trim()
    .toLowerCase()
    .replace(/:\d+$/, "")
    .replace(/^\[(.*)\]$/, "$1");
  return (
    name === "localhost" ||
    name.endsWith(".localhost") ||
    name === "::1" ||
    /^127(\.\d{1,3}){3}$/.test(name)
  );
}
