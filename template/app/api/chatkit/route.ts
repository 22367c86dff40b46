import { chatKitRoute } from "@/lib/chatkit/handler";

// The proxy reads cookies and streams, so it runs per request on Node.js.
export const runtime = "nodejs";
export const dynamic = "force-dynamic";

export const GET = chatKitRoute;
export const POST = chatKitRoute;
export const PUT = chatKitRoute;
export const PATCH = chatKitRoute;
export const DELETE = chatKitRoute;
