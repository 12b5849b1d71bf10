/**
 * A streamed response that was encoded once and is written as-is to many streams (the feed's
 * frames): the gRPC adapter writes `bytes`, the Connect adapter sends `message`. An explicit type,
 * so that sharing the encoding never depends on object identity.
 */
export interface PreEncoded {
  readonly preEncoded: true;
  readonly message: object;
  readonly bytes: Uint8Array;
}

export function isPreEncoded(x: unknown): x is PreEncoded {
  return typeof x === "object" && x !== null && (x as { preEncoded?: unknown }).preEncoded === true;
}
