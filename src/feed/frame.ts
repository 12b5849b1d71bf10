import type { WatchRevocationsResponse } from "../../gen/agentid/v1/revocation_pb.js";
import type { LogEvent } from "../store/revocation-reads.js";

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
}

/** Builds the messages; the server's message mapping (src/server/messages.ts) implements it. */
export interface FrameEncoder {
  /** A batch of events, redacted for resource servers when `redact`. */
  events(events: readonly LogEvent[], redact: boolean): { message: WatchRevocationsResponse; bytes: Uint8Array };
  progress(revision: bigint): { message: WatchRevocationsResponse; bytes: Uint8Array };
}
