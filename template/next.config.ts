import type { NextConfig } from "next";

const nextConfig: NextConfig = {
  // No X-Powered-By header: it only tells a scanner which framework to probe.
  poweredByHeader: false,
};

export default nextConfig;
