"use client";

import { ChatKit, useChatKit } from "@openai/chatkit-react";
import { useEffect, useMemo, useState } from "react";

import { chatkitScriptUrl } from "@/lib/chatkit/config";
import { waitForCustomElement } from "@/lib/chatkit/custom-element";
import { createChatKitFetch, type ChatUser } from "@/lib/chatkit/fetch";
import { buildChatKitOptions } from "@/lib/chatkit/options";

/** How long the ChatKit script may take to define its element before we say so. */
const scriptTimeoutMs = 5_000;

export function ChatPanel({
  user,
  domainKey,
}: {
  user: ChatUser;
  domainKey: string;
}) {
  const options = useMemo(
    () =>
      buildChatKitOptions({ domainKey, fetch: createChatKitFetch({ user }) }),
    [domainKey, user],
  );
  const { control } = useChatKit(options);
  const scriptLoaded = useChatKitScript();

  return (
    <section className="chat" aria-label="Chat">
      <p className="greeting">Signed in as {user.name ?? user.id}</p>
      {scriptLoaded === false && (
        <div className="notice notice-error" role="alert">
          <h2>The chat could not start</h2>
          <p>
            The ChatKit script did not load from <code>{chatkitScriptUrl}</code>
            . Check that this browser can reach it: an ad blocker, a VPN or a
            Content-Security-Policy may block it.
          </p>
        </div>
      )}
      <ChatKit control={control} className="chat-frame" />
    </section>
  );
}

/** null while waiting, then whether `<openai-chatkit>` got defined in time. */
function useChatKitScript(): boolean | null {
  const [loaded, setLoaded] = useState<boolean | null>(null);

  useEffect(() => {
    let active = true;
    void waitForCustomElement(
      window.customElements,
      "openai-chatkit",
      scriptTimeoutMs,
    ).then((defined) => {
      if (active) {
        setLoaded(defined);
      }
    });
    return () => {
      active = false;
    };
  }, []);

  return loaded;
}
