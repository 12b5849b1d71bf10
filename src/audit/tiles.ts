// C2SP tlog-tiles (https://c2sp.org/tlog-tiles): the log as static resources.
//   <prefix>/checkpoint                  the signed checkpoint
//   <prefix>/tile/<L>/<N>[.p/<W>]        hashes at height 8L, 256 a tile (W of them when partial)
//   <prefix>/tile/entries/<N>[.p/<W>]    the entries, each a big-endian uint16 length and its bytes
// <N> is written in 3-digit path elements, all but the last prefixed by "x": 1234067 is
// x001/x234/067.

export const TILE_WIDTH = 256;

export interface TilePath {
  /** undefined: an entry bundle. */
  level?: number;
  index: number;
  /** 256 for a full tile; 1 to 255 for a partial one. */
  width: number;
}

export function formatIndex(n: number): string {
  const parts: string[] = [];
  let rest = n;
  do {
    parts.unshift(String(rest % 1000).padStart(3, "0"));
    rest = Math.floor(rest / 1000);
  } while (rest > 0);
  return parts.map((p, i) => (i < parts.length - 1 ? `x${p}` : p)).join("/");
}

export function tilePath(t: TilePath): string {
  const w = t.width === TILE_WIDTH ? "" : `.p/${t.width}`;
  return `tile/${t.level === undefined ? "entries" : t.level}/${formatIndex(t.index)}${w}`;
}

/** Parses the part of a URL path after "/tile/"; undefined if it is not a tile path. */
export function parseTilePath(path: string): TilePath | undefined {
  const m = /^(entries|0|[1-9][0-9]?)\/((?:x[0-9]{3}\/)*[0-9]{3})(?:\.p\/([1-9][0-9]{0,2}))?$/.exec(path);
  if (!m) return undefined;
  const level = m[1] === "entries" ? undefined : Number(m[1]);
  if (level !== undefined && level > 63) return undefined;
  const digits = m[2]!.replaceAll("x", "").split("/");
  // No leading zero elements: each index has one spelling.
  if (digits.length > 1 && digits[0] === "000") return undefined;
  if (digits.length > 6) return undefined;
  const index = Number(digits.join(""));
  const width = m[3] === undefined ? TILE_WIDTH : Number(m[3]);
  if (width > 255 && m[3] !== undefined) return undefined;
  return { level, index, width };
}

/** An entry bundle: each entry as a big-endian uint16 length followed by its bytes. */
export function encodeEntryBundle(entries: readonly Uint8Array[]): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    if (e.length > 0xffff) throw new Error(`entry of ${e.length} bytes does not fit an entry bundle`);
    const len = Buffer.alloc(2);
    len.writeUInt16BE(e.length);
    parts.push(len, Buffer.from(e));
  }
  return Buffer.concat(parts);
}

export function decodeEntryBundle(bundle: Uint8Array): Buffer[] {
  const b = Buffer.from(bundle);
  const out: Buffer[] = [];
  for (let off = 0; off < b.length; ) {
    if (off + 2 > b.length) throw new Error("entry bundle ends inside a length");
    const len = b.readUInt16BE(off);
    if (off + 2 + len > b.length) throw new Error("entry bundle ends inside an entry");
    out.push(b.subarray(off + 2, off + 2 + len));
    off += 2 + len;
  }
  return out;
}
