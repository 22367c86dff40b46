import { jsonError, LOG_TAG, proxyChatKitRequest } from "./proxy";
import { ConfigurationError, loadProxySettings } from "./settings";

/** What the route handler calls: settings from the environment, then the proxy. */
export async function handleChatKitRequest(
  request: Request,
  env: Readonly<Record<string, string | undefined>>,
): Promise<Response> {
  let settings;
  try {
    settings = loadProxySettings(env);
  } catch (error) {
    if (error instanceof ConfigurationError) {
      console.error(LOG_TAG, error.message);
      return jsonError(500, error.message);
    }
    throw error;
  }
  return proxyChatKitRequest(request, settings);
}
