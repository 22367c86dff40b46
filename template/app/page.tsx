import { cookies, headers } from "next/headers";

import { ChatPanel } from "@/components/chat-panel";
import { cookieName, projectName } from "@/lib/chatkit/config";
import { resolveDomainKey } from "@/lib/chatkit/domain-key";
import { decodeJwtPayload, signedInUserFromClaims } from "@/lib/chatkit/jwt";

export default async function Home() {
  const token = (await cookies()).get(cookieName)?.value;
  const user = token ? signedInUserFromClaims(decodeJwtPayload(token)) : null;
  const host = (await headers()).get("host") ?? "";
  const domainKey = resolveDomainKey(process.env, host);

  return (
    <main className="page">
      <h1>{projectName}</h1>
      {user === null ? (
        <section className="notice" data-testid="sign-in-hint">
          <h2>Sign in first</h2>
          <p>
            The chat needs your login. Sign in so that the{" "}
            <code>{cookieName}</code> cookie is set, then reload this page.
          </p>
        </section>
      ) : domainKey.ok ? (
        <ChatPanel user={user} domainKey={domainKey.value} />
      ) : (
        <section className="notice notice-error" role="alert">
          <h2>ChatKit is not configured</h2>
          <p>{domainKey.error}</p>
        </section>
      )}
    </main>
  );
}
