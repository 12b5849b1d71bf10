import { Listener } from "./listener.js";
import type { Logger } from "pino";
import type { CompiledQuery, DatabaseConnection, Dialect, Driver, QueryCompiler, QueryResult, TransactionSettings } from "kysely";
import type { Db } from "./database.js";

// One sequenced-log mechanism for both logs (revocations and the transparency log). Writers
// append unnumbered rows to the log's inbox in their own transaction and commit in parallel. One
// loop per log and replica numbers committed rows in batches, each batch one statement (a
// database function that moves the rows into the log under the head row's lock and NOTIFYs).
// The loop runs when something may be waiting: a local commit that appended to the inbox, a
// writer waiting for its number, a NOTIFY from another replica's sequencer while this one has
// waiters, and a slow safety tick (a writer that committed and died before its replica numbered
// its row). An idle replica issues one statement per log per tick and nothing else.

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

  /** Another replica announced a head. */
  heard(head: bigint): void {
    this.advance(head);
    // Rows this replica waits for may be numbered now, or the head it found locked is free.
    if (this.waiters.size > 0) this.kick();
  }

  onHead(f: (head: bigint) => void): () => void {
    this.listeners.add(f);
    return () => this.listeners.delete(f);
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
          continue;
        }
        this.advance(r.head);
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

  /** A local transaction that appended to this log committed. */
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

  onHead(name: string, f: (head: bigint) => void): () => void {
    return this.loop(name).onHead(f);
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

/**
 * Tells the sequencer about local commits that appended to a log, without every writer having to:
 * wraps the dialect's driver, notes statements that insert into an inbox (`insert into
 * <table>`), and calls `onCommit` with the table once that statement's transaction commits (at
 * once for a statement outside a transaction).
 */
export class CommitSignals {
  private handler: (table: string) => void = () => {};

  constructor(private readonly tables: readonly string[]) {}

  /** Where commits go (set once the sequencer exists). */
  set onCommit(f: (table: string) => void) {
    this.handler = f;
  }

  wrap(dialect: Dialect): Dialect {
    const pattern = new RegExp(`insert\\s+into\\s+"?(${this.tables.join("|")})\\b`, "gi");
    const signals = this;
    return {
      createAdapter: () => dialect.createAdapter(),
      createIntrospector: (db) => dialect.createIntrospector(db),
      createQueryCompiler: () => dialect.createQueryCompiler(),
      createDriver: () => new SignallingDriver(dialect.createDriver(), pattern, (t) => signals.handler(t)),
    };
  }
}

class SignallingConnection implements DatabaseConnection {
  /** Tables appended to in the open transaction. */
  pending = new Set<string>();
  inTransaction = false;

  constructor(
    readonly inner: DatabaseConnection,
    private readonly pattern: RegExp,
    private readonly fire: (table: string) => void,
  ) {}

  async executeQuery<R>(q: CompiledQuery): Promise<QueryResult<R>> {
    const result = await this.inner.executeQuery<R>(q);
    const tables = q.sql.includes("insert") || q.sql.includes("INSERT") ? [...q.sql.matchAll(this.pattern)].map((m) => m[1]!.toLowerCase()) : [];
    if (tables.length > 0) {
      if (this.inTransaction) for (const t of tables) this.pending.add(t);
      else for (const t of new Set(tables)) this.fire(t);
    }
    return result;
  }

  streamQuery<R>(q: CompiledQuery, chunkSize?: number): AsyncIterableIterator<QueryResult<R>> {
    return this.inner.streamQuery<R>(q, chunkSize);
  }
}

class SignallingDriver implements Driver {
  private readonly wrapped = new WeakMap<DatabaseConnection, SignallingConnection>();

  constructor(
    private readonly inner: Driver,
    private readonly pattern: RegExp,
    private readonly fire: (table: string) => void,
  ) {}

  init(): Promise<void> {
    return this.inner.init();
  }

  async acquireConnection(): Promise<DatabaseConnection> {
    const c = await this.inner.acquireConnection();
    let w = this.wrapped.get(c);
    if (!w) {
      w = new SignallingConnection(c, this.pattern, this.fire);
      this.wrapped.set(c, w);
    }
    return w;
  }

  async beginTransaction(c: DatabaseConnection, settings: TransactionSettings): Promise<void> {
    const w = c as SignallingConnection;
    await this.inner.beginTransaction(w.inner, settings);
    w.inTransaction = true;
    w.pending.clear();
  }

  async commitTransaction(c: DatabaseConnection): Promise<void> {
    const w = c as SignallingConnection;
    w.inTransaction = false;
    const tables = [...w.pending];
    w.pending.clear();
    await this.inner.commitTransaction(w.inner);
    for (const t of tables) this.fire(t);
  }

  async rollbackTransaction(c: DatabaseConnection): Promise<void> {
    const w = c as SignallingConnection;
    w.inTransaction = false;
    w.pending.clear();
    await this.inner.rollbackTransaction(w.inner);
  }

  // A rolled-back savepoint may leave a table noted: one spare pass, never a missed one.
  async savepoint(c: DatabaseConnection, name: string, compile: QueryCompiler["compileQuery"]): Promise<void> {
    await this.inner.savepoint!((c as SignallingConnection).inner, name, compile);
  }

  async rollbackToSavepoint(c: DatabaseConnection, name: string, compile: QueryCompiler["compileQuery"]): Promise<void> {
    await this.inner.rollbackToSavepoint!((c as SignallingConnection).inner, name, compile);
  }

  async releaseSavepoint(c: DatabaseConnection, name: string, compile: QueryCompiler["compileQuery"]): Promise<void> {
    await this.inner.releaseSavepoint!((c as SignallingConnection).inner, name, compile);
  }

  releaseConnection(c: DatabaseConnection): Promise<void> {
    return this.inner.releaseConnection((c as SignallingConnection).inner);
  }

  destroy(): Promise<void> {
    return this.inner.destroy();
  }
}
