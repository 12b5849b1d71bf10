import type { LogEvent } from "../store/revocation-reads.js";

/** Who is watching, as far as the feed's filter cares. */
export interface Subscriber {
  /** The API key the stream was opened with (streams end when it is revoked). */
  keyId: string;
  role: "admin" | "issuer" | "resource_server";
  audiences: readonly string[];
}

/**
 * What one kind of watcher may see. Streams with equal keys see exactly the same events, so they
 * share every encoded frame (one encoding per view and batch, not per stream).
 *
 * Rules (docs/feed-and-sdk.md, "Who sees what"):
 * - admin (and issuer) keys see every event;
 * - a resource_server key sees token events for tokens that list one of its audiences, and agent
 *   events for agents that hold or held such a token: exactly the set it may have cached answers
 *   for. What it sees, it sees whole, as the log shows it the same revocations' entries.
 */
export interface View {
  readonly key: string;
  sees(e: LogEvent): boolean;
}

const EVERYTHING: View = { key: "*", sees: () => true };

export function viewKey(s: Subscriber): string {
  if (s.role !== "resource_server") return EVERYTHING.key;
  return `aud:${[...new Set(s.audiences)].sort().join("\n")}`;
}

export function makeView(s: Subscriber): View {
  if (s.role !== "resource_server") return EVERYTHING;
  const mine = new Set(s.audiences);
  return {
    key: viewKey(s),
    sees: (e) => e.audiences.some((a) => mine.has(a)),
  };
}
