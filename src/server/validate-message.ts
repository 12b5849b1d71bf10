import { ScalarType, type DescField, type DescMessage } from "@bufbuild/protobuf";
import { invalidArgument } from "../domain/errors.js";
import { storableTextProblem } from "../domain/validate.js";

// The checks every request gets before its handler, whatever the RPC: each string storable as
// PostgreSQL text, each Timestamp and Duration within the range google/protobuf defines (so that
// every Date made from one is a real time). Handlers then check what is specific to their fields.
// Field paths use proto names: proof.signed_at, scopes[3], labels["team"].

// 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z, as timestamp.proto defines the valid range.
const MIN_TIMESTAMP_SECONDS = -62135596800n;
const MAX_TIMESTAMP_SECONDS = 253402300799n;
// About 10,000 years, as duration.proto defines it.
const MAX_DURATION_SECONDS = 315576000000n;

type Msg = Record<string, unknown>;

function text(path: string, v: unknown): void {
  if (typeof v !== "string") return;
  const problem = storableTextProblem(v);
  if (problem) throw invalidArgument(path, problem);
}

function timestamp(path: string, m: Msg): void {
  const seconds = m.seconds as bigint;
  const nanos = m.nanos as number;
  if (seconds < MIN_TIMESTAMP_SECONDS || seconds > MAX_TIMESTAMP_SECONDS || nanos < 0 || nanos > 999_999_999) {
    throw invalidArgument(path, "must be a time from 0001-01-01 to 9999-12-31 UTC (google.protobuf.Timestamp), with nanos from 0 to 999999999");
  }
}

function duration(path: string, m: Msg): void {
  const seconds = m.seconds as bigint;
  const nanos = m.nanos as number;
  const sameSign = seconds === 0n || nanos === 0 || seconds > 0n === nanos > 0;
  if (seconds < -MAX_DURATION_SECONDS || seconds > MAX_DURATION_SECONDS || nanos < -999_999_999 || nanos > 999_999_999 || !sameSign) {
    throw invalidArgument(path, "must be a valid google.protobuf.Duration (at most 10,000 years; seconds and nanos of one sign)");
  }
}

function message(desc: DescMessage, m: unknown, path: string): void {
  // Well-known wrappers are unboxed into plain values by protobuf-es.
  if (typeof m !== "object" || m === null) return text(path, m);
  const msg = m as Msg;
  if (desc.typeName === "google.protobuf.Timestamp") return timestamp(path, msg);
  if (desc.typeName === "google.protobuf.Duration") return duration(path, msg);
  for (const f of desc.fields) {
    let v: unknown;
    if (f.oneof) {
      const o = msg[f.oneof.localName] as { case?: string; value?: unknown } | undefined;
      if (o?.case !== f.localName) continue;
      v = o.value;
    } else {
      v = msg[f.localName];
    }
    field(f, v, path ? `${path}.${f.name}` : f.name);
  }
}

function field(f: DescField, v: unknown, path: string): void {
  if (v === undefined) return;
  switch (f.fieldKind) {
    case "scalar":
      if (f.scalar === ScalarType.STRING) text(path, v);
      return;
    case "enum":
      return;
    case "message":
      return message(f.message, v, path);
    case "list":
      (v as unknown[]).forEach((x, i) => {
        if (f.listKind === "message") message(f.message, x, `${path}[${i}]`);
        else if (f.listKind === "scalar" && f.scalar === ScalarType.STRING) text(`${path}[${i}]`, x);
      });
      return;
    case "map":
      for (const [k, x] of Object.entries(v as Msg)) {
        const at = `${path}[${JSON.stringify(k.slice(0, 64))}]`;
        text(at, k);
        if (f.mapKind === "message") message(f.message, x, at);
        else if (f.mapKind === "scalar" && f.scalar === ScalarType.STRING) text(at, x);
      }
      return;
    default: {
      const never: never = f;
      return never;
    }
  }
}

/** Throws INVALID_ARGUMENT naming the first field no handler could store or turn into a time. */
export function validateRequest(desc: DescMessage, req: unknown): void {
  message(desc, req, "");
}
