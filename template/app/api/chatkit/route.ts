import { handleChatKitRequest } from "@/lib/chatkit/handler";

// The proxy reads cookies and streams, so it runs per request on Node.js.
export const runtime = "nodejs";
export const dynamic = "force-dynamic";

export function POST(request: Request): Promise<Response> {
  return handleChatKitRequest(request, process.env);
}
