import type { WatchRevocationsResponse } from "../../gen/agentid/v1/revocation_pb.js";
import type { LogEvent } from "../store/revocation-reads.js";

/** Frames carry at most this many events (a catch-up from history is split into several). */
export const MAX_FRAME_EVENTS = 1000;

/**
 * One WatchRevocations response, encoded once and written as-is to every stream that shares it:
 * the gRPC adapter writes `bytes`, the Connect adapter sends `message`. Immutable (the message is
 * frozen deeply), so sharing it between streams and views is safe. `preEncoded` is the marker the
 * transports look for (src/server/encoded.ts).
 */
export class Frame {
  readonly preEncoded = true;

  constructor(
    readonly kind: "events" | "progress",
    /** Revisions (after, through] are covered: every event in them this view may see is in the frame. */
    readonly after: bigint,
    readonly through: bigint,
    readonly message: WatchRevocationsResponse,
    readonly bytes: Uint8Array,
  ) {
    Object.freeze(this);
  }

  /**
   * Consecutive event frames as one message: a stream that fell behind catches up in one write
   * instead of one per batch. Protobuf concatenation is a merge, and `events` is repeated, so the
   * bytes need no re-encoding; the message shares the (frozen) events.
   */
  static join(frames: readonly Frame[]): Frame {
    const first = frames[0]!;
    if (frames.length === 1) return first;
    const last = frames.at(-1)!;
    // Streams of one view fall behind together, on the same frames: join once, share the result.
    // A frame belongs to one view, so its identity and the range's end name the joined frame.
    let byEnd = joined.get(first);
    if (!byEnd) joined.set(first, (byEnd = new Map()));
    const known = byEnd.get(last.through);
    if (known) return known;
    for (let i = 1; i < frames.length; i++) {
      if (frames[i]!.kind !== "events" || frames[i]!.after !== frames[i - 1]!.through) throw new Error("feed bug: joining frames that do not follow each other");
    }
    const events = Object.freeze(frames.flatMap((f) => f.message.events));
    const message = Object.freeze({ ...first.message, events }) as WatchRevocationsResponse;
    const f = new Frame("events", first.after, last.through, message, Buffer.concat(frames.map((f) => f.bytes)));
    byEnd.set(last.through, f);
    return f;
  }
}

/** Joined frames by their first frame and end; gone with the first frame. */
const joined = new WeakMap<Frame, Map<bigint, Frame>>();

/** Builds the messages; the server's message mapping (src/server/messages.ts) implements it. */
export interface FrameEncoder {
  /** A batch of events. */
  events(events: readonly LogEvent[]): { message: WatchRevocationsResponse; bytes: Uint8Array };
  progress(revision: bigint): { message: WatchRevocationsResponse; bytes: Uint8Array };
}
