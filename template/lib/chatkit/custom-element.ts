/**
 * Resolves true once the custom element is defined, or false after `timeoutMs`: the
 * ChatKit script can be blocked (an ad blocker, a VPN, a Content-Security-Policy, a
 * mistyped URL), and then the chat area would stay blank without saying why.
 */
export function waitForCustomElement(
  registry: Pick<CustomElementRegistry, "get" | "whenDefined">,
  name: string,
  timeoutMs: number,
): Promise<boolean> {
  if (registry.get(name) !== undefined) {
    return Promise.resolve(true);
  }

  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), timeoutMs);
    void registry.whenDefined(name).then(() => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}
