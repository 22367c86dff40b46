import { chatKitRoute } from "@/lib/chatkit/handler";

// Paths below /api/chatkit (uploads, for one) go to the same path below the backend's
// ChatKit endpoint.
export const runtime = "nodejs";
export const dynamic = "force-dynamic";

export const GET = chatKitRoute;
export const POST = chatKitRoute;
export const PUT = chatKitRoute;
export const PATCH = chatKitRoute;
export const DELETE = chatKitRoute;
