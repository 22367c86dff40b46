import type { UseChatKitOptions } from "@openai/chatkit-react";

/** The browser's ChatKit requests go to this app's proxy, never to the backend. */
export const chatkitProxyUrl = "/api/chatkit";

/** The options handed to `useChatKit`; add theme, composer or start screen here. */
export function buildChatKitOptions({
  domainKey,
  fetch,
}: {
  domainKey: string;
  fetch: typeof globalThis.fetch;
}): UseChatKitOptions {
  return {
    api: { url: chatkitProxyUrl, domainKey, fetch },
  };
}
