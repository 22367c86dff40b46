"use client";

import { ChatKit, useChatKit } from "@openai/chatkit-react";
import { useMemo } from "react";

import { createChatKitFetch, type ChatUser } from "@/lib/chatkit/fetch";

/** The browser's ChatKit requests go to this app's proxy, never to the backend. */
const proxyUrl = "/api/chatkit";

export function ChatPanel({
  user,
  domainKey,
}: {
  user: ChatUser;
  domainKey: string;
}) {
  const fetchWithContext = useMemo(() => createChatKitFetch({ user }), [user]);
  const { control } = useChatKit({
    api: { url: proxyUrl, domainKey, fetch: fetchWithContext },
  });

  return (
    <section className="chat" aria-label="Chat">
      <p className="greeting">Signed in as {user.name ?? user.id}</p>
      <ChatKit control={control} className="chat-frame" />
    </section>
  );
}
