/**
 * ChatKit checks that the page's domain is registered for the key. In development the
 * app runs on localhost, which needs no registered key, so a placeholder stands in.
 */
export const localhostDomainKey = "domain_pk_localhost_development_placeholder";

export type DomainKeyResult =
  | { ok: true; value: string }
  | { ok: false; error: string };

export function resolveDomainKey(
  env: Readonly<Record<string, string | undefined>>,
): DomainKeyResult {
  const key = env.NEXT_PUBLIC_CHATKIT_DOMAIN_KEY?.trim();
  if (key) {
    return { ok: true, value: key };
  }
  if (env.NODE_ENV !== "production") {
    return { ok: true, value: localhostDomainKey };
  }
  return {
    ok: false,
    error:
      "NEXT_PUBLIC_CHATKIT_DOMAIN_KEY is not set. Register this site's domain with " +
      "OpenAI, put the key in the environment, and rebuild.",
  };
}
