/**
 * The fetch that ChatKit uses in the browser. It sends the httpOnly cookie to this app's
 * own proxy, names the page the user is on, and adds who is asking and from where to
 * every user message. Anything it does not recognise goes out untouched.
 */

/** The header that tells the backend which page a request came from. */
export const pageUrlHeader = "X-Page-URL";

/** Who is signed in, as the server page decoded it from the token. */
export interface ChatUser {
  id: string;
  name: string | null;
  email: string | null;
}

export interface PageContext {
  url: string;
  path: string;
  title: string;
}

export interface ChatKitFetchOptions {
  user: ChatUser;
  /** Reads the current page; defaults to the browser's location and title. */
  getPageContext?: () => PageContext;
  /** The fetch to call; defaults to the global one, looked up on every call. */
  fetch?: typeof fetch;
}

export function createChatKitFetch(options: ChatKitFetchOptions): typeof fetch {
  const getPageContext = options.getPageContext ?? readBrowserPageContext;

  // An arrow function: ChatKit may call it as `api.fetch(...)` or detached, and it
  // never depends on `this`.
  return async (input: RequestInfo | URL, init?: RequestInit) => {
    const page = getPageContext();
    const baseFetch = options.fetch ?? globalThis.fetch;

    const headers = new Headers(
      input instanceof Request ? input.headers : undefined,
    );
    new Headers(init?.headers).forEach((value, name) =>
      headers.set(name, value),
    );
    headers.set(pageUrlHeader, page.url);

    const body = await withUserContext(
      input,
      init,
      options.user,
      page,
      headers,
    );

    // same-origin: the proxy lives on this origin, and the cookie must never go to
    // another one even if a URL is misconfigured.
    const outgoing: RequestInit = {
      ...init,
      headers,
      credentials: "same-origin",
    };
    if (body !== undefined) {
      outgoing.body = body;
    }
    return baseFetch(input, outgoing);
  };
}

/**
 * Returns a new JSON body carrying the user and page in `params.input.metadata` when the
 * request sends a user message, or undefined to keep the body as it was.
 */
async function withUserContext(
  input: RequestInfo | URL,
  init: RequestInit | undefined,
  user: ChatUser,
  page: PageContext,
  headers: Headers,
): Promise<string | undefined> {
  const text = await readJsonText(input, init, headers);
  if (text === null) {
    return undefined;
  }

  let payload: unknown;
  try {
    payload = JSON.parse(text);
  } catch {
    return undefined;
  }
  const messageInput =
    isRecord(payload) && isRecord(payload.params)
      ? payload.params.input
      : undefined;
  if (!isRecord(messageInput)) {
    return undefined;
  }

  const metadata = isRecord(messageInput.metadata) ? messageInput.metadata : {};
  messageInput.metadata = {
    ...metadata,
    userId: user.id,
    userInfo: { id: user.id, name: user.name, email: user.email },
    pageContext: page,
  };
  return JSON.stringify(payload);
}

/** The body as text when it is a string (or a JSON Request), else null. */
async function readJsonText(
  input: RequestInfo | URL,
  init: RequestInit | undefined,
  headers: Headers,
): Promise<string | null> {
  if (init?.body !== undefined && init.body !== null) {
    return typeof init.body === "string" ? init.body : null;
  }
  const isJsonRequest =
    input instanceof Request &&
    input.body !== null &&
    (headers.get("content-type") ?? "").includes("json");
  return isJsonRequest ? input.clone().text() : null;
}

function readBrowserPageContext(): PageContext {
  return {
    url: window.location.href,
    path: window.location.pathname,
    title: document.title,
  };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
