import type { Metadata } from "next";
import Script from "next/script";

import { chatkitScriptUrl, projectName } from "@/lib/chatkit/config";

import "./globals.css";

export const metadata: Metadata = {
  title: projectName,
};

export default function RootLayout({
  children,
}: Readonly<{ children: React.ReactNode }>) {
  return (
    <html lang="en">
      <body>
        {/* beforeInteractive preloads the script from <head> and runs it before
            React hydrates, so <openai-chatkit> is defined by then. */}
        <Script src={chatkitScriptUrl} strategy="beforeInteractive" />
        {children}
      </body>
    </html>
  );
}
