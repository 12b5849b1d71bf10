import { Listener } from "./listener.js";
import type { Logger } from "pino";
import type { Db } from "./database.js";
import type { LogEvent } from "./revocation-reads.js";

// One sequenced-log mechanism for both logs (revocations and the transparency log), and the
// replica's one spine for them: its only LISTEN, and its one source of log heads. Writers
// append unnumbered rows to the log's inbox in their own transaction and commit in parallel. One
// loop per log and replica numbers committed rows in batches, each batch one statement (a
// database function that moves the rows into the log under the head row's lock and NOTIFYs).
// What holds: a row is numbered only after it commits (a pass sees committed inbox rows only),
// and every new number is above every number already visible, so a reader that has seen n never
// misses a later number below it. (Not "in commit order" exactly: rows committed between two
// passes are numbered by inbox id.) The loop runs when something may be waiting: a writer that
// committed rows to the inbox and says so (wake), a writer waiting for its number, a NOTIFY from
// another replica's sequencer while this one has waiters, and a slow safety tick (a writer that
// committed and died before its replica numbered its row). An idle replica issues one statement
// per log per tick and nothing else.

/** What one numbering pass did: one statement. */
export interface PassResult {
  /** The log's head after the pass (last revision, or number of entries). */
  head: bigint;
  /** Rows this pass numbered; a full batch means more may be waiting. */
  numbered: number;
  /** Another replica held the head: its NOTIFY says when to look again. */
  busy: boolean;
  /** Numbers of the rows asked about that are numbered (by anyone). */
  found: Map<bigint, bigint>;
  /** The rows this pass numbered, when the log returns them (the revocation log's events). */
  events?: LogEvent[];
}

export interface SequencedLog {
  name: string;
  /** Where sequencers announce a new head (payload: the head). */
  channel: string;
  /** Numbers up to `max` committed rows (unless another replica is at it) and looks up `waiting`. */
  pass(db: Db, max: number, waiting: bigint[]): Promise<PassResult>;
}

export interface SequencerOptions {
  db: Db;
  /** For the LISTEN connection; empty: no LISTEN (numbering still works; other replicas' heads arrive with the tick). */
  databaseUrl: string;
  logger: Logger;
  logs: SequencedLog[];
  /** The safety tick (default 10 s): numbers rows whose writer's replica died before numbering them. */
  tickMs?: number;
  batch?: number;
}

/** What a writer needs of the sequencer: to say that its transaction appended to a log and committed. */
export type LogWaker = Pick<Sequencer, "wake">;

type Waiter = { resolve: (n: bigint) => void; reject: (err: unknown) => void };
type Flusher = { resolve: (head: bigint) => void; reject: (err: unknown) => void };

/** The loop for one log. Passes never overlap; wake-ups during a pass cause one more pass after it. */
class LogLoop {
  head = -1n;
  statements = 0;
  private running = false;
  private again = false;
  private readonly waiters = new Map<bigint, Waiter[]>();
  private flushers: Flusher[] = [];
  private readonly listeners = new Set<(head: bigint) => void>();
  private readonly numberedListeners = new Set<(events: LogEvent[]) => void>();
  private heardDuringPass = -1n;

  constructor(
    readonly log: SequencedLog,
    private readonly db: Db,
    private readonly logger: Logger,
    private readonly batch: number,
  ) {}

  kick(): void {
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    void this.run();
  }

  /** Resolves with the row's number, assigned by whichever replica's sequencer numbers it. */
  numberOf(id: bigint): Promise<bigint> {
    return new Promise((resolve, reject) => {
      const list = this.waiters.get(id);
      if (list) list.push({ resolve, reject });
      else this.waiters.set(id, [{ resolve, reject }]);
      this.kick();
    });
  }

  /** Resolves after a pass that started after this call: every row committed before it is numbered. */
  flush(): Promise<bigint> {
    return new Promise((resolve, reject) => {
      this.flushers.push({ resolve, reject });
      this.kick();
    });
  }

  /** Another replica announced a head (or this one: its pass's NOTIFY, heard on the LISTEN connection). */
  heard(head: bigint): void {
    // Our own pass's NOTIFY, sent at commit, can arrive before the pass's result does: a head
    // heard during a pass waits for it, so that followers are handed the rows before their head.
    if (this.running) this.heardDuringPass = this.heardDuringPass > head ? this.heardDuringPass : head;
    else this.advance(head);
    // Rows this replica waits for may be numbered now, or the head it found locked is free.
    if (this.waiters.size > 0) this.kick();
  }

  onHead(f: (head: bigint) => void): () => void {
    this.listeners.add(f);
    return () => this.listeners.delete(f);
  }

  onNumbered(f: (events: LogEvent[]) => void): () => void {
    this.numberedListeners.add(f);
    return () => this.numberedListeners.delete(f);
  }

  private advance(head: bigint): void {
    if (head <= this.head) return;
    this.head = head;
    for (const f of this.listeners) f(head);
  }

  private async run(): Promise<void> {
    try {
      do {
        this.again = false;
        const flushers = this.flushers;
        this.flushers = [];
        const waiting = [...this.waiters.keys()];
        let r: PassResult;
        try {
          this.statements++;
          r = await this.log.pass(this.db, this.batch, waiting);
        } catch (err) {
          this.logger.warn({ err: (err as Error).message, log: this.log.name }, "sequencer: numbering pass failed");
          for (const f of flushers) f.reject(err);
          // Writers hear about it rather than hang; their rows are committed and get numbered later.
          for (const [id, list] of this.waiters) {
            this.waiters.delete(id);
            for (const w of list) w.reject(err);
          }
          this.advance(this.takeHeard());
          continue;
        }
        // The rows first: a follower handed them is at the new head when it hears of it. A
        // follower's failure must not stop the numbering or leave writers waiting.
        if (r.events && r.events.length > 0) {
          for (const f of this.numberedListeners) {
            try {
              f(r.events);
            } catch (err) {
              this.logger.error({ err: (err as Error).message, log: this.log.name }, "sequencer: a follower failed to take numbered rows");
            }
          }
        }
        this.advance(r.head);
        this.advance(this.takeHeard());
        for (const [id, n] of r.found) {
          const list = this.waiters.get(id);
          this.waiters.delete(id);
          for (const w of list ?? []) w.resolve(n);
        }
        for (const f of flushers) f.resolve(r.head);
        // A full batch: more rows are waiting. Busy: the holder's NOTIFY wakes us (heard()).
        if (r.numbered >= this.batch) this.again = true;
      } while (this.again);
    } finally {
      this.running = false;
    }
  }

  private takeHeard(): bigint {
    const head = this.heardDuringPass;
    this.heardDuringPass = -1n;
    return head;
  }

  rejectAll(err: Error): void {
    for (const f of this.flushers.splice(0)) f.reject(err);
    for (const [id, list] of this.waiters) {
      this.waiters.delete(id);
      for (const w of list) w.reject(err);
    }
  }
}

export class Sequencer {
  private readonly loops = new Map<string, LogLoop>();
  private listener: Listener | undefined;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly tickMs: number;

  constructor(private readonly o: SequencerOptions) {
    this.tickMs = o.tickMs ?? 10_000;
    for (const log of o.logs) this.loops.set(log.name, new LogLoop(log, o.db, o.logger, o.batch ?? 10_000));
  }

  /** Numbers what is waiting, starts listening and ticking. */
  async start(): Promise<void> {
    if (this.o.databaseUrl) {
      const byChannel = new Map([...this.loops.values()].map((l) => [l.log.channel, l.log.name]));
      this.listener = new Listener({
        databaseUrl: this.o.databaseUrl,
        channels: [...byChannel.keys()],
        logger: this.o.logger,
        name: "sequencer",
        onNotification: (channel, payload) => {
          const name = byChannel.get(channel);
          if (name && payload && /^[0-9]+$/.test(payload)) this.heard(name, BigInt(payload));
        },
        // Anything announced while we were not listening.
        onReconnect: () => {
          for (const l of this.loops.values()) l.kick();
        },
      });
      await this.listener.start();
    }
    await Promise.all([...this.loops.values()].map((l) => l.flush()));
    this.timer = setInterval(() => {
      for (const l of this.loops.values()) l.kick();
    }, this.tickMs);
    this.timer.unref();
  }

  private loop(name: string): LogLoop {
    const l = this.loops.get(name);
    if (!l) throw new Error(`no sequenced log named ${name}`);
    return l;
  }

  /** A transaction that appended to this log's inbox committed: its writer says so, to have it numbered now. */
  wake(name: string): void {
    if (!this.closed) this.loop(name).kick();
  }

  /** The number the sequencer gives the committed row `id`. */
  numberOf(name: string, id: bigint): Promise<bigint> {
    if (this.closed) return Promise.reject(new Error("sequencer closed"));
    return this.loop(name).numberOf(id);
  }

  /** The log's head once every row committed before the call is numbered. */
  flush(name: string): Promise<bigint> {
    if (this.closed) return Promise.reject(new Error("sequencer closed"));
    return this.loop(name).flush();
  }

  /** The last head this replica knows of (its own passes and other replicas' NOTIFY). */
  head(name: string): bigint {
    return this.loop(name).head;
  }

  /** Calls `f` with every head this replica learns of (its passes, other replicas' NOTIFY). */
  onHead(name: string, f: (head: bigint) => void): () => void {
    return this.loop(name).onHead(f);
  }

  /** Calls `f` with the rows each of this replica's passes numbered (before their head is announced). */
  onNumbered(name: string, f: (events: LogEvent[]) => void): () => void {
    return this.loop(name).onNumbered(f);
  }

  /** Another replica's sequencer announced `head` (what a NOTIFY on the log's channel carries). */
  heard(name: string, head: bigint): void {
    if (!this.closed) this.loop(name).heard(head);
  }

  /** Statements the loops have issued, for tests and benchmarks. */
  get statements(): number {
    let n = 0;
    for (const l of this.loops.values()) n += l.statements;
    return n;
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    for (const l of this.loops.values()) l.rejectAll(new Error("sequencer closed"));
    await this.listener?.close();
  }
}
