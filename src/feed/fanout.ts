import type { LogEvent } from "../store/revocation-reads.js";
import { Frame, MAX_FRAME_EVENTS, type FrameEncoder } from "./frame.js";
import type { View } from "./view.js";
import type { Watcher } from "./watcher.js";

/**
 * The live fan-out (after Teleport's lib/services/fanout.go and etcd's synced watchers): synced
 * watchers grouped by view; each batch the tailer reads is filtered and encoded once per view and
 * the same frame is queued on every stream of that view. It also keeps the newest events in
 * memory, so that a watcher whose cursor is recent joins without reading the database.
 */
export class FanOut {
  private _head: bigint;
  /** Milliseconds the last publish took (filter, encode, queue on every stream). */
  lastFanoutMs = 0;
  private readonly groups = new Map<string, { view: View; watchers: Set<Watcher> }>();
  /** The newest events, oldest first: every event in (historyFloor, head]. */
  private history: LogEvent[] = [];
  private historyFloor: bigint;
  private progressFrame: Frame | undefined;
  /** Frames built for watchers joining from history, by view and cursor; valid until head moves. */
  private joinFrames = new Map<string, Frame[]>();

  constructor(
    head: bigint,
    private readonly encoder: FrameEncoder,
    private readonly historyLimit = 10_000,
  ) {
    this._head = head;
    this.historyFloor = head;
  }

  /** Every event up to head has been handed to the synced watchers (moved only by publish and skipTo). */
  get head(): bigint {
    return this._head;
  }

  get size(): number {
    let n = 0;
    for (const g of this.groups.values()) n += g.watchers.size;
    return n;
  }

  get views(): number {
    return this.groups.size;
  }

  /** The oldest cursor a watcher can join from without a database read. */
  get floor(): bigint {
    return this.historyFloor;
  }

  *watchers(): Iterable<Watcher> {
    for (const g of this.groups.values()) yield* g.watchers;
  }

  /** Hands the events in (head, through] to every synced watcher: one frame per view. */
  publish(events: readonly LogEvent[], through: bigint): void {
    if (through <= this.head) return;
    const started = performance.now();
    const after = this.head;
    for (const { view, watchers } of this.groups.values()) {
      const visible = view.key === "*" ? events : events.filter((e) => view.sees(e));
      if (visible.length === 0) {
        for (const w of watchers) w.advance(through);
        continue;
      }
      const frame = this.eventFrame(visible, view, after, through);
      for (const w of watchers) w.pushEvents(frame);
    }
    this._head = through;
    this.progressFrame = undefined;
    this.joinFrames.clear();
    this.remember(events);
    this.lastFanoutMs = performance.now() - started;
  }

  /**
   * The log lost events the fan-out had not read (compaction with a retention near 0): synced
   * watchers cannot be told which, so they are failed with `err` and resume; history restarts.
   */
  skipTo(through: bigint, err: (cursor: bigint) => Error): void {
    if (through <= this.head) return;
    for (const w of [...this.watchers()]) {
      w.fail(err(w.cursor));
      this.remove(w);
    }
    this._head = through;
    this.history = [];
    this.historyFloor = through;
    this.progressFrame = undefined;
    this.joinFrames.clear();
  }

  /** A bookmark at head for every synced watcher: one shared frame. */
  progress(): void {
    const frame = this.bookmark();
    for (const g of this.groups.values()) for (const w of g.watchers) w.pushProgress(frame);
  }

  /**
   * Moves a watcher into the live fan-out in one synchronous step: first what it lacks from
   * history (cursor must be within it), then a bookmark. Nothing can fall between the two, because
   * publish runs on the same thread.
   */
  join(w: Watcher): void {
    if (w.cursor < this.historyFloor || w.cursor > this.head) {
      throw new Error(`feed bug: joining at ${w.cursor}, history covers (${this.historyFloor}, ${this.head}]`);
    }
    if (w.cursor < this.head) {
      const key = `${w.view.key}\u0000${w.cursor}`;
      let frames = this.joinFrames.get(key);
      if (!frames) this.joinFrames.set(key, (frames = this.historyFrames(w.view, w.cursor)));
      for (const f of frames) w.pushEvents(f);
      w.advance(this.head);
    }
    if (w.closed) return;
    let g = this.groups.get(w.view.key);
    if (!g) this.groups.set(w.view.key, (g = { view: w.view, watchers: new Set() }));
    g.watchers.add(w);
    w.synced = true;
    w.pushProgress(this.bookmark());
  }

  remove(w: Watcher): void {
    const g = this.groups.get(w.view.key);
    if (!g?.watchers.delete(w)) return;
    if (g.watchers.size === 0) this.groups.delete(w.view.key);
  }

  /** An event frame for a view; catch-up uses it too, so every frame is built one way. */
  eventFrame(visible: readonly LogEvent[], view: View, after: bigint, through: bigint): Frame {
    const { message, bytes } = this.encoder.events(visible);
    return new Frame("events", after, through, message, bytes);
  }

  private bookmark(): Frame {
    if (!this.progressFrame || this.progressFrame.through !== this.head) {
      const { message, bytes } = this.encoder.progress(this.head);
      this.progressFrame = new Frame("progress", this.head, this.head, message, bytes);
    }
    return this.progressFrame;
  }

  private historyFrames(view: View, cursor: bigint): Frame[] {
    // History is in revision order: find the first event after the cursor.
    let lo = 0;
    let hi = this.history.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.history[mid]!.revision <= cursor) lo = mid + 1;
      else hi = mid;
    }
    const visible = this.history.slice(lo).filter((e) => view.sees(e));
    const frames: Frame[] = [];
    let after = cursor;
    for (let i = 0; i < visible.length; i += MAX_FRAME_EVENTS) {
      const chunk = visible.slice(i, i + MAX_FRAME_EVENTS);
      const last = i + MAX_FRAME_EVENTS >= visible.length;
      const through = last ? this.head : chunk.at(-1)!.revision;
      frames.push(this.eventFrame(chunk, view, after, through));
      after = through;
    }
    return frames;
  }

  private remember(events: readonly LogEvent[]): void {
    if (this.historyLimit === 0) {
      this.historyFloor = this.head;
      return;
    }
    for (const e of events) this.history.push(e);
    const excess = this.history.length - this.historyLimit;
    if (excess > 0) {
      this.historyFloor = this.history[excess - 1]!.revision;
      this.history = this.history.slice(excess);
    }
  }
}
