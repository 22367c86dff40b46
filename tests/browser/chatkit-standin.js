/*
 * A stand-in for the ChatKit web component script
 * (https://cdn.platform.openai.com/deployments/chatkit/chatkit.js), which this machine
 * cannot reach. tests/test_browser.py serves it at that URL with Playwright routing.
 *
 * It defines <openai-chatkit> with the methods @openai/chatkit-react calls, records what
 * the React side hands it in window.__chatkit = {options, calls}, and exposes helpers in
 * window.__chatkitStandIn that make requests through `options.api.fetch` the way the
 * real component would, so the test drives the app's fetch wrapper and proxy for real.
 * It spies on window.fetch (which the wrapper looks up on every call) to record what
 * the wrapper handed the browser.
 */
(() => {
  "use strict";

  const state = { options: null, calls: [], fetches: [] };
  window.__chatkit = state;

  // --- what the wrapper hands the browser's fetch -------------------------------------
  const realFetch = window.fetch;
  window.fetch = function spiedFetch(input, init) {
    const isRequest = input instanceof Request;
    const headers = new Headers(isRequest ? input.headers : undefined);
    new Headers(init && init.headers).forEach((value, name) => headers.set(name, value));
    const body = init && "body" in init ? init.body : undefined;
    state.fetches.push({
      url: isRequest ? input.url : String(input),
      inputIsRequest: isRequest,
      method: (init && init.method) || (isRequest ? input.method : "GET"),
      credentials: init && init.credentials,
      initHeaders: init && init.headers !== undefined ? [...new Headers(init.headers)] : null,
      headers: [...headers],
      bodyType:
        body === undefined
          ? "undefined"
          : body === null
            ? "null"
            : Object.prototype.toString.call(body).slice(8, -1),
    });
    return realFetch.apply(this, arguments);
  };

  // --- the element -------------------------------------------------------------------
  const methodNames = [
    "focusComposer",
    "setThreadId",
    "sendUserMessage",
    "setComposerValue",
    "fetchUpdates",
    "sendCustomAction",
    "showHistory",
    "hideHistory",
  ];

  class ChatKitStandIn extends HTMLElement {
    setOptions(options) {
      state.options = options;
      state.element = this;
      state.calls.push({
        method: "setOptions",
        at: Date.now(),
        connected: this.isConnected,
        keys: Object.keys(options || {}),
      });
      this.setAttribute("data-standin-options", "set");
    }

    connectedCallback() {
      // Light DOM children would not match the server's HTML and break hydration, so
      // the stand-in shows itself in a shadow root, as the real component renders.
      if (!this.shadowRoot) {
        this.attachShadow({ mode: "open" }).innerHTML =
          '<p style="margin:1rem;font:14px system-ui;color:#57606a">' +
          "ChatKit stand-in (tests/browser/chatkit-standin.js)</p>";
      }
    }
  }
  for (const name of methodNames) {
    ChatKitStandIn.prototype[name] = function recordCall(...args) {
      state.calls.push({ method: name, at: Date.now(), args });
    };
  }
  customElements.define("openai-chatkit", ChatKitStandIn);

  // --- helpers the test calls with page.evaluate -------------------------------------
  function api() {
    if (!state.options || !state.options.api) {
      throw new Error("setOptions has not been called with an `api` option");
    }
    return state.options.api;
  }

  /** Calls api.fetch as a method of `api`, or detached from it. */
  function callFetch(how, input, init) {
    const target = api();
    if (how === "method") {
      return init === undefined ? target.fetch(input) : target.fetch(input, init);
    }
    if (how === "detached") {
      const detached = target.fetch;
      return init === undefined ? detached(input) : detached(input, init);
    }
    throw new Error(`unknown call style ${how}`);
  }

  function fromBase64(text) {
    const binary = atob(text);
    return Uint8Array.from(binary, (char) => char.charCodeAt(0));
  }

  function headerList(response) {
    return [...response.headers];
  }

  /** Reads an SSE body as it arrives, stamping every event with Date.now(). */
  async function readEvents(response) {
    const events = [];
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    const deadline = Date.now() + 30_000;
    for (let reads = 0; reads < 100_000 && Date.now() < deadline; reads++) {
      const { value, done } = await reader.read();
      if (done) {
        break;
      }
      buffer += decoder.decode(value, { stream: true });
      let end = buffer.indexOf("\n\n");
      while (end !== -1) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = block
          .split("\n")
          .filter((line) => line.startsWith("data:"))
          .map((line) => line.slice(5).trimStart())
          .join("\n");
        if (data) {
          events.push({ at: Date.now(), data: JSON.parse(data) });
        }
        end = buffer.indexOf("\n\n");
      }
    }
    return events;
  }

  async function describeResponse(response, startedAt) {
    const contentType = response.headers.get("content-type") || "";
    const result = {
      status: response.status,
      contentType,
      headers: headerList(response),
      startedAt,
      events: null,
      json: null,
      text: null,
    };
    if (contentType.startsWith("text/event-stream")) {
      result.events = await readEvents(response);
    } else {
      result.text = await response.text();
      try {
        result.json = JSON.parse(result.text);
      } catch {
        // not JSON; the text is kept
      }
    }
    result.finishedAt = Date.now();
    return result;
  }

  window.__chatkitStandIn = {
    /** What the element was given, in a form page.evaluate can return. */
    describeOptions() {
      const options = state.options;
      return {
        setOptionsCalls: state.calls.filter((call) => call.method === "setOptions"),
        keys: options ? Object.keys(options) : null,
        apiKeys: options && options.api ? Object.keys(options.api) : null,
        apiUrl: options && options.api ? options.api.url : null,
        domainKey: options && options.api ? options.api.domainKey : null,
        fetchType: options && options.api ? typeof options.api.fetch : null,
        elementInPanel: Boolean(
          state.element && state.element.closest('section[aria-label="Chat"]'),
        ),
      };
    },

    fetches() {
      return state.fetches;
    },

    /** A threads.create with a user message, as ChatKit sends it. */
    async createThread(text, how = "method") {
      const startedAt = Date.now();
      const response = await callFetch(how, api().url, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({
          type: "threads.create",
          params: {
            input: {
              content: [{ type: "input_text", text }],
              attachments: [],
              inference_options: {},
            },
          },
        }),
      });
      return describeResponse(response, startedAt);
    },

    /** A multipart upload of known bytes; the browser picks the boundary. */
    async upload(base64, filename, mimeType, how = "method") {
      const bytes = fromBase64(base64);
      const form = new FormData();
      form.append("purpose", "browser-test");
      form.append("file", new Blob([bytes], { type: mimeType }), filename);
      const startedAt = Date.now();
      const response = await callFetch(how, "/api/chatkit/files/upload", {
        method: "POST",
        body: form,
      });
      return describeResponse(response, startedAt);
    },

    /** A Request object as the only argument; body given as base64 or as text. */
    async sendRequest({ url, method, headers, base64, text }, how = "method") {
      const body = base64 !== undefined ? fromBase64(base64) : text;
      const request = new Request(url, { method, headers, body });
      const startedAt = Date.now();
      const response = await callFetch(how, request);
      return describeResponse(response, startedAt);
    },
  };
})();
