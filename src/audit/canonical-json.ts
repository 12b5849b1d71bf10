// The canonical JSON of audit entries (docs/transparency-log.md): RFC 8785 (JCS) restricted to
// strings, safe integers, booleans, null, arrays and objects; keys sorted by UTF-16 code units, no
// whitespace. No imports: the console's browser verifier (console/src/verify.ts) uses it too.

export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

export function canonicalJson(v: JsonValue): string {
  if (v === null || typeof v === "boolean" || typeof v === "string") return JSON.stringify(v);
  if (typeof v === "number") {
    if (!Number.isSafeInteger(v)) throw new Error(`canonical JSON allows only safe integers, got ${v}`);
    return JSON.stringify(v);
  }
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(",")}]`;
  const keys = Object.keys(v).sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(v[k]!)}`).join(",")}}`;
}
