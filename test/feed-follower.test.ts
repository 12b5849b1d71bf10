// The SDK follower's reconnect policy: exponential backoff with full jitter, and at least the
// server's retry-after-ms when it refused the stream (issue 15).
import { describe, expect, it } from "vitest";
import { Code, ConnectError } from "@connectrpc/connect";
import { reconnectDelay, retryAfter } from "../src/client/feed.js";

describe("follower reconnect delay", () => {
  it("is full jitter under an exponential ceiling", () => {
    expect(reconnectDelay(0, 0, 100, 5000, () => 0.999)).toBeCloseTo(99.9);
    expect(reconnectDelay(3, 0, 100, 5000, () => 0.5)).toBe(400);
    expect(reconnectDelay(30, 0, 100, 5000, () => 1)).toBe(5000);
    expect(reconnectDelay(30, 0, 100, 5000, () => 0)).toBe(0);
  });

  it("waits at least the server's retry-after, spread over as long again", () => {
    expect(reconnectDelay(0, 2000, 100, 5000, () => 0)).toBe(2000);
    expect(reconnectDelay(0, 2000, 100, 5000, () => 1)).toBe(4000);
    // A backoff ceiling above the advice spreads wider still.
    expect(reconnectDelay(10, 2000, 100, 5000, () => 1)).toBe(7000);
  });

  it("reads retry-after-ms from a refusal's trailers, and ignores nonsense", () => {
    const refused = (v?: string) => new ConnectError("busy", Code.ResourceExhausted, v === undefined ? undefined : { "retry-after-ms": v });
    expect(retryAfter(refused("1500"))).toBe(1500);
    expect(retryAfter(refused())).toBe(0);
    expect(retryAfter(refused("soon"))).toBe(0);
    expect(retryAfter(refused("-5"))).toBe(0);
    expect(retryAfter(refused("999999999"))).toBe(300_000);
  });
});
