import { describe, expect, it } from "vitest";

import { buildChatKitOptions, chatkitProxyUrl } from "./options";

describe("buildChatKitOptions", () => {
  const fetch = (() =>
    Promise.resolve(new Response())) as typeof globalThis.fetch;

  it("points ChatKit at the app's own proxy route", () => {
    const options = buildChatKitOptions({ domainKey: "domain_pk_1", fetch });

    expect(chatkitProxyUrl).toBe("/api/chatkit");
    expect(options.api).toMatchObject({ url: "/api/chatkit" });
  });

  it("passes the domain key and the fetch wrapper through", () => {
    const options = buildChatKitOptions({ domainKey: "domain_pk_1", fetch });

    expect(options.api).toEqual({
      url: chatkitProxyUrl,
      domainKey: "domain_pk_1",
      fetch,
    });
  });
});
