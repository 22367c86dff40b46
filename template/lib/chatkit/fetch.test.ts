import { afterEach, describe, expect, it, vi } from "vitest";

import {
  createChatKitFetch,
  pageUrlHeader,
  type ChatUser,
  type PageContext,
} from "./fetch";

const endpoint = "http://127.0.0.1:3000/api/chatkit";

const user: ChatUser = { id: "user-1", name: "Ada", email: "ada@example.com" };

const page: PageContext = {
  url: "http://127.0.0.1:3000/help?q=1",
  path: "/help",
  title: "Help",
};

interface Call {
  input: RequestInfo | URL;
  init: RequestInit;
}

/** A chat fetch whose underlying fetch records its arguments and answers 200. */
function setup() {
  const calls: Call[] = [];
  const recordingFetch: typeof fetch = async (input, init) => {
    calls.push({ input, init: init ?? {} });
    return new Response("{}", { status: 200 });
  };
  const chatFetch = createChatKitFetch({
    user,
    getPageContext: () => page,
    fetch: recordingFetch,
  });
  return { calls, chatFetch };
}

/** The request the real fetch would build from the recorded arguments. */
function sentRequest(call: Call): Request {
  return new Request(call.input, call.init);
}

function userMessage(metadata?: Record<string, unknown>) {
  return {
    type: "threads.create",
    params: {
      input: {
        content: [{ type: "input_text", text: "Hello" }],
        attachments: [],
        ...(metadata ? { metadata } : {}),
      },
    },
  };
}

const expectedMetadata = {
  userId: "user-1",
  userInfo: { id: "user-1", name: "Ada", email: "ada@example.com" },
  pageContext: page,
};

afterEach(() => {
  vi.unstubAllGlobals();
});

describe("createChatKitFetch", () => {
  it("works when called detached", async () => {
    const { calls, chatFetch } = setup();
    const detached = chatFetch;

    const response = await detached(endpoint);

    expect(response.status).toBe(200);
    expect(calls).toHaveLength(1);
  });

  it("works when called as a method of an object", async () => {
    const { calls, chatFetch } = setup();
    const api = { fetch: chatFetch };

    const response = await api.fetch(endpoint);

    expect(response.status).toBe(200);
    expect(calls).toHaveLength(1);
  });

  it("uses the global fetch looked up at call time by default", async () => {
    const chatFetch = createChatKitFetch({ user, getPageContext: () => page });
    const globalFetch = vi.fn(async () => new Response(null, { status: 204 }));
    vi.stubGlobal("fetch", globalFetch);

    const response = await chatFetch(endpoint);

    expect(response.status).toBe(204);
    expect(globalFetch).toHaveBeenCalledTimes(1);
  });

  it("passes a string input through", async () => {
    const { calls, chatFetch } = setup();

    await chatFetch(endpoint);

    expect(calls[0].input).toBe(endpoint);
  });

  it("passes a URL input through", async () => {
    const { calls, chatFetch } = setup();
    const url = new URL(endpoint);

    await chatFetch(url);

    expect(calls[0].input).toBe(url);
  });

  it("passes a Request input through", async () => {
    const { calls, chatFetch } = setup();
    const request = new Request(endpoint, { method: "GET" });

    await chatFetch(request);

    expect(calls[0].input).toBe(request);
  });

  it("adds the page URL header", async () => {
    const { calls, chatFetch } = setup();

    await chatFetch(endpoint);

    expect(new Headers(calls[0].init.headers).get(pageUrlHeader)).toBe(
      page.url,
    );
  });

  it("replaces a page URL header the caller sent", async () => {
    const { calls, chatFetch } = setup();

    await chatFetch(endpoint, { headers: { "x-page-url": "http://evil/" } });

    expect(new Headers(calls[0].init.headers).get(pageUrlHeader)).toBe(
      page.url,
    );
  });

  it("reads the page context on every call", async () => {
    const calls: Call[] = [];
    let current = "http://127.0.0.1:3000/a";
    const chatFetch = createChatKitFetch({
      user,
      getPageContext: () => ({ url: current, path: "/", title: "" }),
      fetch: async (input, init) => {
        calls.push({ input, init: init ?? {} });
        return new Response("{}");
      },
    });

    await chatFetch(endpoint);
    current = "http://127.0.0.1:3000/b";
    await chatFetch(endpoint);

    expect(
      calls.map((call) => new Headers(call.init.headers).get(pageUrlHeader)),
    ).toEqual(["http://127.0.0.1:3000/a", "http://127.0.0.1:3000/b"]);
  });

  it("keeps headers given as a Headers object", async () => {
    const { calls, chatFetch } = setup();

    await chatFetch(endpoint, {
      headers: new Headers({ "X-Trace": "t-1", Accept: "text/event-stream" }),
    });

    const headers = new Headers(calls[0].init.headers);
    expect(headers.get("x-trace")).toBe("t-1");
    expect(headers.get("accept")).toBe("text/event-stream");
  });

  it("keeps headers given as an array of pairs", async () => {
    const { calls, chatFetch } = setup();

    await chatFetch(endpoint, {
      headers: [
        ["X-Trace", "t-1"],
        ["Accept", "text/event-stream"],
      ],
    });

    const headers = new Headers(calls[0].init.headers);
    expect(headers.get("x-trace")).toBe("t-1");
    expect(headers.get("accept")).toBe("text/event-stream");
  });

  it("keeps headers given as a plain object", async () => {
    const { calls, chatFetch } = setup();

    await chatFetch(endpoint, {
      headers: { "X-Trace": "t-1", Accept: "text/event-stream" },
    });

    const headers = new Headers(calls[0].init.headers);
    expect(headers.get("x-trace")).toBe("t-1");
    expect(headers.get("accept")).toBe("text/event-stream");
  });

  it("merges a Request's headers with init headers case-insensitively", async () => {
    const { calls, chatFetch } = setup();
    const request = new Request(endpoint, {
      headers: { "X-Trace": "from-request", "X-Request-Only": "r" },
    });

    await chatFetch(request, { headers: [["x-trace", "from-init"]] });

    const pairs = [...new Headers(calls[0].init.headers)];
    expect(pairs).toEqual([
      ["x-page-url", page.url],
      ["x-request-only", "r"],
      ["x-trace", "from-init"],
    ]);
  });

  it("sends credentials only to the same origin", async () => {
    const { calls, chatFetch } = setup();

    await chatFetch(endpoint, { credentials: "include" });

    expect(calls[0].init.credentials).toBe("same-origin");
  });

  it("keeps the other init options", async () => {
    const { calls, chatFetch } = setup();
    const signal = new AbortController().signal;

    await chatFetch(endpoint, { method: "PUT", signal, cache: "no-store" });

    expect(calls[0].init).toMatchObject({
      method: "PUT",
      signal,
      cache: "no-store",
    });
  });

  it("adds the user and page to a user message's metadata", async () => {
    const { calls, chatFetch } = setup();

    await chatFetch(endpoint, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(userMessage()),
    });

    const sent = JSON.parse(calls[0].init.body as string);
    expect(sent.params.input.metadata).toEqual(expectedMetadata);
  });

  it("keeps the rest of a user message's body unchanged", async () => {
    const { calls, chatFetch } = setup();
    const message = { ...userMessage(), extra: { keep: [1, "two"] } };

    await chatFetch(endpoint, {
      method: "POST",
      body: JSON.stringify(message),
    });

    const sent = JSON.parse(calls[0].init.body as string);
    delete sent.params.input.metadata;
    expect(sent).toEqual(message);
  });

  it("merges the user and page into existing metadata", async () => {
    const { calls, chatFetch } = setup();

    await chatFetch(endpoint, {
      method: "POST",
      body: JSON.stringify(userMessage({ source: "widget", userId: "forged" })),
    });

    const sent = JSON.parse(calls[0].init.body as string);
    expect(sent.params.input.metadata).toEqual({
      source: "widget",
      ...expectedMetadata,
    });
  });

  it("replaces metadata that is not an object", async () => {
    const { calls, chatFetch } = setup();
    const message = userMessage();
    const body = JSON.stringify({
      ...message,
      params: { input: { ...message.params.input, metadata: "oops" } },
    });

    await chatFetch(endpoint, { method: "POST", body });

    const sent = JSON.parse(calls[0].init.body as string);
    expect(sent.params.input.metadata).toEqual(expectedMetadata);
  });

  it("leaves a JSON body without params.input as the same string", async () => {
    const { calls, chatFetch } = setup();
    const body = JSON.stringify({ type: "threads.list", params: { limit: 9 } });

    await chatFetch(endpoint, { method: "POST", body });

    expect(calls[0].init.body).toBe(body);
  });

  it("leaves a JSON body whose params.input is not an object unchanged", async () => {
    const { calls, chatFetch } = setup();
    const body = JSON.stringify({ type: "x", params: { input: "text" } });

    await chatFetch(endpoint, { method: "POST", body });

    expect(calls[0].init.body).toBe(body);
  });

  it("leaves a non-JSON string body as the same string", async () => {
    const { calls, chatFetch } = setup();
    const body = "params.input=not json";

    await chatFetch(endpoint, { method: "POST", body });

    expect(calls[0].init.body).toBe(body);
  });

  it("leaves a FormData body as the same object without forcing a Content-Type", async () => {
    const { calls, chatFetch } = setup();
    const body = new FormData();
    body.append("file", new Blob(["bytes"]), "a.txt");

    await chatFetch(endpoint, { method: "POST", body });

    expect(calls[0].init.body).toBe(body);
    expect(new Headers(calls[0].init.headers).has("content-type")).toBe(false);
  });

  it("lets fetch give a FormData body its multipart Content-Type", async () => {
    const { calls, chatFetch } = setup();
    const body = new FormData();
    body.append("file", new Blob(["bytes"]), "a.txt");

    await chatFetch(endpoint, { method: "POST", body });

    expect(sentRequest(calls[0]).headers.get("content-type")).toMatch(
      /^multipart\/form-data; boundary=/,
    );
  });

  it("leaves a Blob body as the same object without forcing a Content-Type", async () => {
    const { calls, chatFetch } = setup();
    const body = new Blob([JSON.stringify(userMessage())], {
      type: "application/json",
    });

    await chatFetch(endpoint, { method: "POST", body });

    expect(calls[0].init.body).toBe(body);
    expect(new Headers(calls[0].init.headers).has("content-type")).toBe(false);
  });

  it("leaves an ArrayBuffer body as the same object without forcing a Content-Type", async () => {
    const { calls, chatFetch } = setup();
    const body = new TextEncoder().encode(JSON.stringify(userMessage())).buffer;

    await chatFetch(endpoint, { method: "POST", body });

    expect(calls[0].init.body).toBe(body);
    expect(new Headers(calls[0].init.headers).has("content-type")).toBe(false);
  });

  it("adds the user and page to a Request's JSON user message", async () => {
    const { calls, chatFetch } = setup();
    const request = new Request(endpoint, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(userMessage()),
    });

    await chatFetch(request);

    const sent = await sentRequest(calls[0]).json();
    expect(sent.params.input.metadata).toEqual(expectedMetadata);
  });

  it("keeps a Request's JSON body readable by the caller", async () => {
    const { chatFetch } = setup();
    const request = new Request(endpoint, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(userMessage()),
    });

    await chatFetch(request);

    expect(request.bodyUsed).toBe(false);
  });

  it("keeps a Request's method and headers when it adds metadata", async () => {
    const { calls, chatFetch } = setup();
    const request = new Request(endpoint, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-Trace": "t-1" },
      body: JSON.stringify(userMessage()),
    });

    await chatFetch(request);

    const sent = sentRequest(calls[0]);
    expect(sent.method).toBe("POST");
    expect(sent.headers.get("content-type")).toBe("application/json");
    expect(sent.headers.get("x-trace")).toBe("t-1");
    expect(sent.headers.get(pageUrlHeader)).toBe(page.url);
  });

  it("passes a Request's FormData body through with its multipart Content-Type", async () => {
    const { calls, chatFetch } = setup();
    const form = new FormData();
    form.append("file", new Blob(["bytes"]), "a.txt");
    const request = new Request(endpoint, { method: "POST", body: form });
    const contentType = request.headers.get("content-type");
    expect(contentType).toMatch(/^multipart\/form-data; boundary=/);

    await chatFetch(request);

    expect(calls[0].init.body).toBeUndefined();
    const sent = sentRequest(calls[0]);
    expect(sent.headers.get("content-type")).toBe(contentType);
    const received = await sent.formData();
    const file = received.get("file") as File;
    expect(await file.text()).toBe("bytes");
  });
});
