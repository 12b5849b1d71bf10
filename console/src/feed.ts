import { Code, ConnectError } from "@connectrpc/connect";
import type { RevocationEvent, WatchRevocationsResponse } from "../../gen/agentid/v1/revocation_pb.js";
import type { Api } from "./api.js";

/** The events a response carries (a batch, in revision order; empty in a pure bookmark). */
export function eventsOf(res: WatchRevocationsResponse): readonly RevocationEvent[] {
  return res.events;
}

/** The bookmark a response carries: every event up to it has been delivered. */
export function progressOf(res: WatchRevocationsResponse): bigint | undefined {
  return res.progress?.revision;
}

export type FeedState = "connecting" | "connected" | "stale" | "reconnecting" | "refused";

export interface ReceivedEvent {
  event: RevocationEvent;
  /** When this console received it (ms since the epoch). */
  receivedAt: number;
  /** Replayed from the log on (re)connect, rather than arriving live. */
  replayed: boolean;
}

export interface FeedSnapshot {
  state: FeedState;
  /** Newest first, at most KEEP. */
  events: readonly ReceivedEvent[];
  /** Every event up to this revision has been received. */
  revision: bigint;
  lastMessageAt: number;
  reconnects: number;
  error?: string;
  /** When the next attempt starts, while reconnecting. */
  retryAt?: number;
}

const KEEP = 500;
// The server sends a bookmark at least every second; three missed ones mean the stream is stale.
const STALE_AFTER_MS = 3000;
const BACKOFF_INITIAL_MS = 250;
const BACKOFF_MAX_MS = 8000;

/**
 * Follows WatchRevocations: replays the retained log, then live events; on a broken stream it
 * reconnects with full-jitter backoff and resumes after the last revision it saw.
 */
export class FeedFollower {
  private snap: FeedSnapshot = { state: "connecting", events: [], revision: 0n, lastMessageAt: 0, reconnects: 0 };
  private readonly listeners = new Set<(s: FeedSnapshot) => void>();
  private readonly eventListeners = new Set<(e: RevocationEvent) => void>();
  private readonly abort = new AbortController();
  private staleTimer?: ReturnType<typeof setInterval>;
  private caughtUp = false;

  constructor(private readonly api: Api) {}

  start(): void {
    this.staleTimer = setInterval(() => {
      if (this.snap.state === "connected" && Date.now() - this.snap.lastMessageAt > STALE_AFTER_MS) this.set({ state: "stale" });
    }, 500);
    void this.run();
  }

  stop(): void {
    this.abort.abort();
    clearInterval(this.staleTimer);
  }

  get snapshot(): FeedSnapshot {
    return this.snap;
  }

  subscribe(fn: (s: FeedSnapshot) => void): () => void {
    this.listeners.add(fn);
    fn(this.snap);
    return () => this.listeners.delete(fn);
  }

  /** Called for each event as it arrives (replayed ones included). */
  onEvent(fn: (e: RevocationEvent) => void): () => void {
    this.eventListeners.add(fn);
    return () => this.eventListeners.delete(fn);
  }

  private set(p: Partial<FeedSnapshot>): void {
    this.snap = { ...this.snap, ...p };
    for (const l of this.listeners) l(this.snap);
  }

  private async run(): Promise<void> {
    const signal = this.abort.signal;
    let attempt = 0;
    while (!signal.aborted) {
      this.caughtUp = false;
      try {
        const stream = this.api.revocations.watchRevocations({ afterRevision: this.snap.revision }, { signal });
        for await (const res of stream) {
          attempt = 0;
          const fresh: ReceivedEvent[] = [];
          const now = Date.now();
          let revision = this.snap.revision;
          for (const event of eventsOf(res)) {
            if (event.revision <= revision) continue; // already seen before a reconnect
            revision = event.revision;
            fresh.push({ event, receivedAt: now, replayed: !this.caughtUp });
          }
          const progress = progressOf(res);
          if (progress !== undefined) {
            // The first bookmark follows the backlog: from here on, events are live.
            this.caughtUp = true;
            if (progress > revision) revision = progress;
          }
          this.set({
            state: "connected",
            error: undefined,
            retryAt: undefined,
            lastMessageAt: now,
            revision,
            events: fresh.length ? [...fresh.reverse(), ...this.snap.events].slice(0, KEEP) : this.snap.events,
          });
          for (const f of fresh) for (const l of this.eventListeners) l(f.event);
        }
        if (signal.aborted) return;
        throw new ConnectError("the server ended the stream", Code.Unavailable);
      } catch (err) {
        if (signal.aborted) return;
        const e = ConnectError.from(err);
        if (e.code === Code.PermissionDenied || e.code === Code.Unauthenticated) {
          this.set({ state: "refused", error: e.rawMessage });
          return;
        }
        if (e.code === Code.OutOfRange) {
          // The cursor was compacted away: replay the retained log from the start.
          this.set({ revision: 0n, events: [] });
        }
        const delay = Math.random() * Math.min(BACKOFF_MAX_MS, BACKOFF_INITIAL_MS * 2 ** attempt++);
        this.set({ state: "reconnecting", error: e.rawMessage, reconnects: this.snap.reconnects + 1, retryAt: Date.now() + delay });
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }
}
