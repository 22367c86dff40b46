import {
  jsonError,
  LOG_TAG,
  proxyChatKitRequest,
  type ProxySettings,
} from "./proxy";
import { ConfigurationError, loadProxySettings } from "./settings";

/**
 * What Next hands a route handler besides the request: the catch-all's `path`, or
 * nothing at all for /api/chatkit itself.
 */
export interface ChatKitRouteContext {
  params: Promise<{ path?: string[] } | undefined>;
}

/** What the route handler calls: settings from the environment, then the proxy. */
export async function handleChatKitRequest(
  request: Request,
  env: Readonly<Record<string, string | undefined>>,
  subpath: readonly string[] = [],
): Promise<Response> {
  let settings;
  try {
    settings = cachedSettings(env);
  } catch (error) {
    if (error instanceof ConfigurationError) {
      console.error(LOG_TAG, error.message);
      return jsonError(500, error.message);
    }
    throw error;
  }
  return proxyChatKitRequest(request, settings, subpath);
}

let cached: { key: string; settings: ProxySettings } | null = null;

/**
 * The settings are read per request, but parsed again only when one of the variables
 * they come from has changed: parsing URLs on every call is measurable.
 */
function cachedSettings(
  env: Readonly<Record<string, string | undefined>>,
): ProxySettings {
  const key = [
    env.CHATKIT_UPSTREAM_URL,
    env.CHATKIT_UPSTREAM_TIMEOUT_MS,
    env.CHATKIT_ALLOWED_ORIGINS,
  ].join("\u0000");
  if (cached === null || cached.key !== key || cached.settings.env !== env) {
    cached = { key, settings: loadProxySettings(env) };
  }
  return cached.settings;
}

/** The route handler for /api/chatkit and every path below it, for every method. */
export async function chatKitRoute(
  request: Request,
  context: ChatKitRouteContext,
): Promise<Response> {
  const params = await context.params;
  return handleChatKitRequest(request, process.env, params?.path ?? []);
}
