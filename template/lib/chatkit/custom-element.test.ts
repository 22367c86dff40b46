import { afterEach, describe, expect, it, vi } from "vitest";

import { waitForCustomElement } from "./custom-element";

/** A registry whose element gets defined when the test says so. */
function registry(definedAtStart: boolean) {
  let define = () => {};
  const defined = new Promise<CustomElementConstructor>((resolve) => {
    define = () => resolve(class {} as unknown as CustomElementConstructor);
  });
  return {
    get: (name: string) =>
      definedAtStart && name === "openai-chatkit"
        ? (class {} as unknown as CustomElementConstructor)
        : undefined,
    whenDefined: () => defined,
    define,
  };
}

afterEach(() => {
  vi.useRealTimers();
});

describe("waitForCustomElement", () => {
  it("resolves true at once when the element is already defined", async () => {
    await expect(
      waitForCustomElement(registry(true), "openai-chatkit", 1_000),
    ).resolves.toBe(true);
  });

  it("resolves true when the element gets defined before the timeout", async () => {
    vi.useFakeTimers();
    const fake = registry(false);

    const result = waitForCustomElement(fake, "openai-chatkit", 5_000);
    await vi.advanceTimersByTimeAsync(1_000);
    fake.define();

    await expect(result).resolves.toBe(true);
  });

  it("resolves false when the element is still undefined at the timeout", async () => {
    vi.useFakeTimers();

    const result = waitForCustomElement(
      registry(false),
      "openai-chatkit",
      5_000,
    );
    await vi.advanceTimersByTimeAsync(5_000);

    await expect(result).resolves.toBe(false);
  });
});
