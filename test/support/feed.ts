import type { WatchRevocationsResponse } from "../../gen/agentid/v1/revocation_pb.js";
import type { Clients } from "./harness.js";

/** Collects a WatchRevocations stream in the background; wait for conditions on what arrived. */
export class StreamRecorder {
  readonly messages: WatchRevocationsResponse[] = [];
  readonly controller = new AbortController();
  error: unknown;
  ended = false;
  private waiters: (() => void)[] = [];
  readonly done: Promise<void>;

  constructor(clients: Clients, afterRevision = 0n) {
    this.done = (async () => {
      try {
        for await (const m of clients.revocations.watchRevocations({ afterRevision }, { signal: this.controller.signal })) {
          this.messages.push(m);
          this.notify();
        }
      } catch (err) {
        if (!this.controller.signal.aborted) this.error = err;
      } finally {
        this.ended = true;
        this.notify();
      }
    })();
  }

  private notify(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  get revisions(): bigint[] {
    return this.messages.flatMap((m) => (m.kind.case === "revocation" ? [m.kind.value.revision] : []));
  }

  get events() {
    return this.messages.flatMap((m) => (m.kind.case === "revocation" ? [m.kind.value] : []));
  }

  get progress(): bigint[] {
    return this.messages.flatMap((m) => (m.kind.case === "progress" ? [m.kind.value.revision] : []));
  }

  /** Resolves once predicate holds; rejects after timeoutMs (a hang guard, not a timing claim). */
  async until(predicate: (r: this) => boolean, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!predicate(this)) {
      if (this.ended) throw new Error(`stream ended: ${String(this.error)}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`condition not met; got revisions ${this.revisions.join(",")}`);
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, Math.min(left, 100));
      });
    }
  }

  stop(): Promise<void> {
    this.controller.abort();
    return this.done;
  }
}
