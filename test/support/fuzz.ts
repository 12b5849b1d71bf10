// A request fuzzer for every RPC of every service, on both ports and every protocol they speak:
// gRPC over HTTP/2 to grpc-js, and Connect (JSON and binary), gRPC-Web and gRPC to connect-node.
// Requests are made from the protobuf-es descriptors: boundary values for every field, random and
// mutated valid messages, bad UTF-8, huge repeated fields, and framing faults (wrong content
// types, truncated and lying length prefixes, bad compression flags), sent as raw HTTP/1.1 and
// HTTP/2 so that nothing a client library would refuse is out of reach. No vitest imports: the
// short run is test/fuzz.test.ts, the long one bench/fuzz.ts.
import http from "node:http";
import http2 from "node:http2";
import { gzipSync } from "node:zlib";
import {
  create,
  ScalarType,
  toBinary,
  toJsonString,
  type DescField,
  type DescMessage,
  type DescMethod,
  type DescService,
  type Message,
} from "@bufbuild/protobuf";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { AgentService } from "../../gen/agentid/v1/agent_pb.js";
import { TokenService } from "../../gen/agentid/v1/token_pb.js";
import { RevocationService } from "../../gen/agentid/v1/revocation_pb.js";
import { KeyService } from "../../gen/agentid/v1/key_pb.js";
import { PolicyService } from "../../gen/agentid/v1/policy_pb.js";
import { ActivityService } from "../../gen/agentid/v1/activity_pb.js";
import { AuditService } from "../../gen/agentid/v1/audit_pb.js";
import { rss } from "../../bench/lib/ctl.js";

export const SERVICES: readonly DescService[] = [AgentService, TokenService, RevocationService, KeyService, PolicyService, ActivityService, AuditService];
export const METHODS: readonly DescMethod[] = SERVICES.flatMap((s) => s.methods);

/** Deterministic: mulberry32. */
export class Rng {
  constructor(private s: number) {}
  next(): number {
    let t = (this.s = (this.s + 0x6d2b79f5) | 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  pick<T>(a: readonly T[]): T {
    return a[this.int(a.length)]!;
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  bytes(n: number): Uint8Array {
    const b = new Uint8Array(n);
    for (let i = 0; i < n; i++) b[i] = this.int(256);
    return b;
  }
}

/** Real ids and secrets of the server under test, so that generated requests reach deep paths. */
export interface Pool {
  agentId: string;
  tokenId: string;
  token: string;
  /** A spare key's id (never the fuzzer's own admin key, which RevokeApiKey would end). */
  keyId: string;
  /** Every string above, and more, for string fields. */
  strings: string[];
  /** Honest public keys, for RegisterAgent. */
  publicKeys?: Uint8Array[];
}

/** A well-formed request for each RPC, from the pool; generators start from these. */
function validInit(method: DescMethod, pool: Pool, rng: Rng): Record<string, unknown> {
  const key = new Uint8Array(32);
  key.set(rng.bytes(32));
  switch (method.name) {
    case "RegisterAgent":
      return { name: "fuzz", publicKey: rng.pick(pool.publicKeys ?? [key]), allowedScopes: ["s"], allowedAudiences: ["a"], labels: { team: "fuzz" } };
    case "GetAgent":
    case "GetTrustScore":
    case "ListTrustScores":
      return { agentId: pool.agentId };
    case "Issue":
      return { agentId: pool.agentId, scopes: ["s"], audiences: ["a"] };
    case "Introspect":
      return { token: pool.token, requiredScope: "s" };
    case "Revoke":
      return { target: { case: "tokenId", value: pool.tokenId }, reason: "fuzz" };
    case "CreateApiKey":
      return { name: "fuzz", role: 2 };
    case "RevokeApiKey":
      return { keyId: pool.keyId };
    case "CreatePolicy":
      return { policy: { name: `fuzz-${rng.int(1000)}`, kind: 1, threshold: 1000 } };
    case "DeletePolicy":
      return { name: `fuzz-${rng.int(1000)}` };
    case "ReportActivity":
      return { agentId: pool.agentId, kind: 2, detail: "fuzz" };
    case "GetInclusionProof":
      return { leafIndex: 0n };
    case "GetConsistencyProof":
      return { firstTreeSize: 1n };
    default:
      return {};
  }
}

const TEXT_EDGES = [
  "",
  "a",
  "x".repeat(129),
  "y".repeat(5000),
  "\u0000",
  "a\u0000b",
  "\ud800",
  "x\udfffy",
  "\ud83d\ude00",
  "a b",
  "\n",
  "\u202e",
  "'; drop table agents; --",
  "%00",
  "agt_",
  "tok_",
  "at_",
  "ak_",
  "key_",
  "dep_",
  "-1",
  "99999999999999999999",
  "OTk5OTk5OTk5OTk5OTk5OTk5OQ", // base64url of 19 nines
  "OTIyMzM3MjAzNjg1NDc3NTgwOA", // 9223372036854775808
  "LTE",
  "orders:read",
  "agent.registered",
  "key.created",
];
const INT32_EDGES = [0, 1, -1, 2, 100, 1000, 1001, 2 ** 31 - 1, -(2 ** 31)];
const UINT32_EDGES = [0, 1, 2 ** 32 - 1];
const INT64_EDGES = [0n, 1n, -1n, 2n ** 63n - 1n, -(2n ** 63n), 10n ** 18n, 1_000_000n, 62135596800n, 253402300800n];
const UINT64_EDGES = [0n, 1n, 2n ** 64n - 1n];
const DOUBLE_EDGES = [0, -0, 1.5, -1, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 1e308, 5e-324];
const TIMESTAMP_SECONDS = [0n, -1n, -62135596800n, -62135596801n, 253402300799n, 253402300800n, 2n ** 63n - 1n, -(2n ** 63n), 10n ** 15n, BigInt(Math.floor(Date.now() / 1000))];
const NANOS = [0, 1, -1, 999_999_999, 1_000_000_000, 2 ** 31 - 1, -(2 ** 31)];
const DURATION_SECONDS = [0n, 1n, -1n, 60n, 315576000000n, 315576000001n, 2n ** 63n - 1n, -(2n ** 63n)];
const SMALL_ORDER = Buffer.from("0100000000000000000000000000000000000000000000000000000000000000", "hex");

type Mode = "boundary" | "random";

function scalarValue(t: ScalarType, rng: Rng, pool: Pool, mode: Mode): unknown {
  switch (t) {
    case ScalarType.STRING:
      if (mode === "random" && rng.chance(0.3)) return String.fromCharCode(...Array.from({ length: rng.int(40) }, () => rng.int(0x10000)));
      return rng.chance(0.4) && pool.strings.length ? rng.pick(pool.strings) : rng.pick(TEXT_EDGES);
    case ScalarType.BYTES:
      return rng.pick([new Uint8Array(0), new Uint8Array(32), SMALL_ORDER, rng.bytes(32), rng.bytes(64), rng.bytes(31), rng.bytes(4096)]);
    case ScalarType.BOOL:
      return rng.chance(0.5);
    case ScalarType.INT32:
    case ScalarType.SINT32:
    case ScalarType.SFIXED32:
      return mode === "random" ? (rng.int(2 ** 32) | 0) : rng.pick(INT32_EDGES);
    case ScalarType.UINT32:
    case ScalarType.FIXED32:
      return rng.pick(UINT32_EDGES);
    case ScalarType.INT64:
    case ScalarType.SINT64:
    case ScalarType.SFIXED64:
      return mode === "random" ? BigInt.asIntN(64, BigInt(rng.int(2 ** 32)) * BigInt(rng.int(2 ** 32))) : rng.pick(INT64_EDGES);
    case ScalarType.UINT64:
    case ScalarType.FIXED64:
      return rng.pick(UINT64_EDGES);
    case ScalarType.DOUBLE:
    case ScalarType.FLOAT:
      return rng.pick(DOUBLE_EDGES);
    default: {
      const never: never = t;
      return never;
    }
  }
}

function enumValue(f: { enum: { values: readonly { number: number }[] } }, rng: Rng): number {
  return rng.chance(0.8) ? rng.pick(f.enum.values).number : rng.pick([-1, 42, 2 ** 31 - 1]);
}

/** A message with every field set (or left out) to an edge or random value of its type. */
export function generate(desc: DescMessage, rng: Rng, pool: Pool, mode: Mode, depth = 0): Message {
  if (desc.typeName === "google.protobuf.Timestamp") {
    return create(desc, { seconds: rng.pick(TIMESTAMP_SECONDS), nanos: rng.pick(NANOS) } as never);
  }
  if (desc.typeName === "google.protobuf.Duration") {
    return create(desc, { seconds: rng.pick(DURATION_SECONDS), nanos: rng.pick(NANOS) } as never);
  }
  const init: Record<string, unknown> = {};
  const oneofsSet = new Set<string>();
  for (const f of desc.fields) {
    if (rng.chance(mode === "boundary" ? 0.15 : 0.35)) continue;
    if (f.oneof) {
      if (oneofsSet.has(f.oneof.localName)) continue;
      oneofsSet.add(f.oneof.localName);
      init[f.oneof.localName] = { case: f.localName, value: fieldValue(f, rng, pool, mode, depth) };
      continue;
    }
    init[f.localName] = fieldValue(f, rng, pool, mode, depth);
  }
  return create(desc, init as never);
}

function single(f: DescField, rng: Rng, pool: Pool, mode: Mode, depth: number): unknown {
  if (f.fieldKind === "scalar" || (f.fieldKind === "list" && f.listKind === "scalar")) return scalarValue(f.scalar!, rng, pool, mode);
  if (f.fieldKind === "enum" || (f.fieldKind === "list" && f.listKind === "enum")) return enumValue(f as never, rng);
  const m = (f as { message: DescMessage }).message;
  return depth > 4 ? create(m) : generate(m, rng, pool, mode, depth + 1);
}

function fieldValue(f: DescField, rng: Rng, pool: Pool, mode: Mode, depth: number): unknown {
  switch (f.fieldKind) {
    case "scalar":
    case "enum":
    case "message":
      return single(f, rng, pool, mode, depth);
    case "list": {
      // Now and then a huge list: the bound has to be somewhere other than memory.
      const n = rng.pick([0, 1, 2, 3, 17, 65, 1000, rng.chance(0.2) ? 20_000 : 5]);
      const one = single(f, rng, pool, mode, depth);
      return Array.from({ length: n }, (_, i) => (i < 50 ? single(f, rng, pool, mode, depth) : one));
    }
    case "map": {
      const n = rng.pick([0, 1, 2, 65, 300]);
      const out: Record<string, unknown> = {};
      for (let i = 0; i < n; i++) {
        const k = i < 3 ? String(scalarValue(ScalarType.STRING, rng, pool, mode)) : `k${i}`;
        out[k] =
          f.mapKind === "scalar"
            ? scalarValue(f.scalar, rng, pool, mode)
            : f.mapKind === "enum"
              ? enumValue(f as never, rng)
              : generate(f.message, rng, pool, mode, depth + 1);
      }
      return out;
    }
    default: {
      const never: never = f;
      return never;
    }
  }
}

/** A string field's raw bytes replaced with invalid UTF-8 (an overlong NUL, a lone surrogate, 0xff). */
export function badUtf8(desc: DescMessage, rng: Rng): Uint8Array | undefined {
  const strings = desc.fields.filter((f) => (f.fieldKind === "scalar" || f.fieldKind === "list") && f.scalar === ScalarType.STRING);
  const messages = desc.fields.filter((f) => f.fieldKind === "message");
  const w = new BinaryWriter();
  const bad = rng.pick([[0xff], [0xc0, 0x80], [0xed, 0xa0, 0x80], [0xc3, 0x28], [0xe2, 0x82], [0xf8, 0x88, 0x80, 0x80, 0x80]]);
  if (strings.length) {
    w.tag(rng.pick(strings).number, WireType.LengthDelimited).bytes(Uint8Array.from([0x61, ...bad, 0x62]));
  } else if (messages.length) {
    const f = rng.pick(messages);
    const inner = badUtf8(f.message!, rng);
    if (!inner) return undefined;
    w.tag(f.number, WireType.LengthDelimited).bytes(inner);
  } else {
    return undefined;
  }
  return w.finish();
}

/** Byte-level damage to an encoded message: flips, cuts, garbage, wrong wire types, duplicates. */
export function mutateBytes(b: Uint8Array, rng: Rng): Uint8Array {
  const out = Buffer.from(b);
  switch (rng.int(6)) {
    case 0:
      for (let i = 0; i < 1 + rng.int(4) && out.length; i++) out[rng.int(out.length)] ^= 1 << rng.int(8);
      return out;
    case 1:
      return out.subarray(0, rng.int(out.length + 1));
    case 2:
      return Buffer.concat([out, rng.bytes(1 + rng.int(16))]);
    case 3:
      // A field number the message has, with a wire type it does not.
      return Buffer.concat([out, Buffer.from([((1 + rng.int(8)) << 3) | rng.pick([0, 1, 2, 5]), 0xff, 0xff, 0xff, 0xff, 0x0f])]);
    case 4:
      return Buffer.concat([out, out]);
    default:
      return rng.bytes(rng.int(64));
  }
}

export type Protocol = "grpc" | "grpc-h2-http-port" | "connect-proto" | "connect-json" | "connect-get" | "grpc-web";

export interface Target {
  grpcPort: number;
  httpPort: number;
  /** Admin key, and others to try (wrong roles, malformed, none). */
  keys: (string | undefined)[];
}

export interface Outcome {
  rpc: string;
  protocol: Protocol;
  generator: string;
  /** gRPC status code, "http <status>" where none applies, or "no answer" for an aborted exchange. */
  code: string;
  message: string;
}

const CODE_NAMES = ["ok", "canceled", "unknown", "invalid_argument", "deadline_exceeded", "not_found", "already_exists", "permission_denied", "resource_exhausted", "failed_precondition", "aborted", "out_of_range", "unimplemented", "internal", "unavailable", "data_loss", "unauthenticated"];
export const BAD_CODES = new Set(["unknown", "internal"]);

/**
 * INTERNAL answers grpc-js itself gives on the gRPC port, before any of agentid's code runs (its
 * BaseServerInterceptingCall sends them past every server interceptor): a corrupt gzip message
 * body, and an unparsable grpc-timeout header. Reported for the gRPC port's owner to close (by
 * taking over decompression and the timeout header, or a grpc-js change); counted apart here so
 * that every other INTERNAL still fails the short run.
 */
export function isGrpcJsBuiltIn(o: Outcome): boolean {
  return o.protocol === "grpc" && (o.message === "Failed to decompress message" || /^Invalid grpc-timeout value/.test(o.message));
}

function frame(body: Uint8Array, flags = 0, claimedLength = body.length): Buffer {
  const h = Buffer.alloc(5);
  h[0] = flags;
  h.writeUInt32BE(claimedLength >>> 0, 1);
  return Buffer.concat([h, body]);
}

/** One request as bytes on the wire, with how its framing is (mis)made. */
interface Wire {
  body: Uint8Array;
  json?: string;
  contentType?: string;
  framing: "ok" | "truncated" | "lying-length" | "compressed-flag" | "gzip" | "two-messages" | "empty" | "wrong-content-type" | "bad-timeout";
}

export class Fuzzer {
  private h2: Map<number, http2.ClientHttp2Session> = new Map();
  private agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
  readonly outcomes = new Map<string, number>();
  readonly findings: Outcome[] = [];
  readonly rpcs = new Set<string>();
  /** Exchanges that got no answer, by protocol and error. */
  readonly silent = new Map<string, number>();
  /** Protocols that got at least one answer from the server. */
  readonly protocols = new Set<string>();
  requests = 0;

  constructor(
    private readonly target: Target,
    private readonly pool: Pool,
  ) {}

  close(): void {
    for (const s of this.h2.values()) s.destroy();
    this.agent.destroy();
  }

  private session(port: number): http2.ClientHttp2Session {
    let s = this.h2.get(port);
    if (!s || s.closed || s.destroyed) {
      const session = http2.connect(`http://127.0.0.1:${port}`);
      s = session;
      session.on("error", () => {});
      // A session the server is closing (GOAWAY after a framing fault) takes no new streams.
      const forget = () => {
        if (this.h2.get(port) === session) this.h2.delete(port);
      };
      session.on("goaway", forget);
      session.on("close", forget);
      s.unref();
      this.h2.set(port, s);
    }
    return s;
  }

  /** One generated request: picks the RPC, generator, protocol and key from `rng`. */
  async one(rng: Rng): Promise<Outcome> {
    const method = rng.pick(METHODS);
    const protocol = rng.pick<Protocol>(["grpc", "grpc", "grpc-h2-http-port", "connect-proto", "connect-json", "connect-json", "connect-get", "grpc-web"]);
    const key = rng.chance(0.85) ? this.target.keys[0] : rng.pick(this.target.keys);
    const { generator, wire } = this.build(method, rng, protocol);
    const rpc = `${method.parent.typeName}/${method.name}`;
    let outcome: Outcome;
    try {
      const r = protocol === "grpc" || protocol === "grpc-h2-http-port"
        ? await this.sendGrpc(protocol === "grpc" ? this.target.grpcPort : this.target.httpPort, method, wire, key)
        : await this.sendHttp1(method, protocol, wire, key);
      outcome = { rpc, protocol, generator: `${generator}/${wire.framing}`, ...r };
    } catch (err) {
      outcome = { rpc, protocol, generator: `${generator}/${wire.framing}`, code: "no answer", message: (err as Error).message };
    }
    this.requests++;
    this.rpcs.add(rpc);
    if (outcome.code !== "no answer") this.protocols.add(protocol);
    else {
      const k = `${protocol} ${outcome.generator.split("/")[1]}: ${outcome.message.slice(0, 60)}`;
      this.silent.set(k, (this.silent.get(k) ?? 0) + 1);
    }
    this.outcomes.set(outcome.code, (this.outcomes.get(outcome.code) ?? 0) + 1);
    if (BAD_CODES.has(outcome.code) || outcome.code === "http 500") this.findings.push(outcome);
    return outcome;
  }

  private build(method: DescMethod, rng: Rng, protocol: Protocol): { generator: string; wire: Wire } {
    const gen = rng.pick(["valid", "boundary", "boundary", "random", "mutated", "bad-utf8", "framing"] as const);
    let msg: Message | undefined;
    let body: Uint8Array;
    if (gen === "bad-utf8") {
      body = badUtf8(method.input, rng) ?? new Uint8Array(0);
    } else {
      if (gen === "valid" || (gen === "mutated" && rng.chance(0.5))) {
        msg = create(method.input, validInit(method, this.pool, rng) as never);
      } else {
        msg = generate(method.input, rng, this.pool, gen === "random" ? "random" : "boundary");
      }
      try {
        body = toBinary(method.input, msg);
      } catch {
        body = new Uint8Array(0);
        msg = undefined;
      }
      if (gen === "mutated") {
        body = mutateBytes(body, rng);
        msg = undefined;
      }
    }
    let json: string | undefined;
    if (protocol === "connect-json" || protocol === "connect-get") {
      json = msg ? safeJson(method.input, msg) : undefined;
      if (json === undefined) json = rng.pick(["{", "[]", "null", '{"pageSize":"x"}', '{"unknownField":1}', Buffer.from(body).toString("latin1"), '{"agentId":"\\ud800"}', '{"since":"99999-01-01T00:00:00Z"}']);
    }
    const wire: Wire = { body, json, framing: "ok" };
    if (gen === "framing") {
      wire.framing = rng.pick(["truncated", "lying-length", "compressed-flag", "gzip", "two-messages", "empty", "wrong-content-type", "bad-timeout"] as const);
      if (wire.framing === "wrong-content-type") wire.contentType = rng.pick(["text/plain", "application/xml", "application/grpc+json", "application/json; charset=latin1", "", "multipart/form-data"]);
    }
    return { generator: gen, wire };
  }

  private grpcBody(w: Wire): Buffer {
    switch (w.framing) {
      case "truncated":
        return frame(w.body, 0, w.body.length + 10).subarray(0, 5 + Math.max(0, w.body.length - 1));
      case "lying-length":
        return frame(w.body, 0, 0x7fffffff);
      case "compressed-flag":
        return frame(w.body, 1);
      case "gzip":
        return frame(Buffer.concat([gzipSync(w.body).subarray(0, 12)]), 1);
      case "two-messages":
        return Buffer.concat([frame(w.body), frame(w.body)]);
      case "empty":
        return Buffer.alloc(0);
      default:
        return frame(w.body);
    }
  }

  private sendGrpc(port: number, method: DescMethod, w: Wire, key: string | undefined): Promise<{ code: string; message: string }> {
    return new Promise((resolve, reject) => {
      const headers: http2.OutgoingHttpHeaders = {
        ":method": "POST",
        ":path": `/${method.parent.typeName}/${method.name}`,
        "content-type": w.contentType ?? "application/grpc",
        te: "trailers",
      };
      if (w.framing === "gzip") headers["grpc-encoding"] = "gzip";
      if (w.framing === "bad-timeout") headers["grpc-timeout"] = "forever";
      if (key) headers.authorization = `Bearer ${key}`;
      let stream: http2.ClientHttp2Stream;
      try {
        stream = this.session(port).request(headers);
      } catch (err) {
        reject(err as Error);
        return;
      }
      let status: string | undefined;
      let message = "";
      let httpStatus = 0;
      const done = (code: string) => {
        clearTimeout(timer);
        stream.close(http2.constants.NGHTTP2_CANCEL);
        resolve({ code, message });
      };
      // A stream that is still open after a while is a healthy watch (or a server waiting for
      // the rest of a truncated body): either way not an error answer.
      const timer = setTimeout(() => done(status ? codeName(status) : "open"), 1500);
      const take = (h: http2.IncomingHttpHeaders) => {
        if (h[":status"]) httpStatus = Number(h[":status"]);
        if (h["grpc-status"] !== undefined) {
          status = String(h["grpc-status"]);
          message = decodeURIComponent(String(h["grpc-message"] ?? ""));
        }
      };
      stream.on("response", (h) => {
        take(h);
        if (status !== undefined) done(codeName(status));
        else if (method.methodKind === "server_streaming") stream.once("data", () => done("ok (streaming)"));
      });
      stream.on("trailers", (h) => {
        take(h);
        done(status !== undefined ? codeName(status) : `http ${httpStatus}`);
      });
      stream.on("error", (err) => {
        clearTimeout(timer);
        // node:http2 refuses every new stream of a session it has calmed (too many reset or
        // invalid streams, as a fuzzer makes): a fresh session keeps the run meaningful.
        if (/ENHANCE_YOUR_CALM|REFUSED_STREAM/.test(err.message) && this.h2.get(port)) {
          this.h2.get(port)!.destroy();
          this.h2.delete(port);
        }
        reject(err);
      });
      stream.on("close", () => {
        clearTimeout(timer);
        resolve({ code: status !== undefined ? codeName(status) : httpStatus ? `http ${httpStatus}` : "no answer", message });
      });
      stream.on("data", () => {});
      stream.end(this.grpcBody(w));
    });
  }

  private sendHttp1(method: DescMethod, protocol: Protocol, w: Wire, key: string | undefined): Promise<{ code: string; message: string }> {
    const path = `/${method.parent.typeName}/${method.name}`;
    const streaming = method.methodKind === "server_streaming";
    let body: Buffer;
    let contentType: string;
    let httpMethod = "POST";
    let query = "";
    const headers: http.OutgoingHttpHeaders = {};
    if (protocol === "grpc-web") {
      contentType = "application/grpc-web+proto";
      body = this.grpcBody(w);
      if (w.framing === "gzip") headers["grpc-encoding"] = "gzip";
    } else if (protocol === "connect-get") {
      httpMethod = "GET";
      contentType = "";
      query = `?connect=v1&encoding=json&message=${encodeURIComponent(w.json ?? "{}")}`;
      body = Buffer.alloc(0);
    } else if (streaming) {
      contentType = protocol === "connect-json" ? "application/connect+json" : "application/connect+proto";
      body = this.grpcBody({ ...w, body: protocol === "connect-json" ? Buffer.from(w.json ?? "{}") : w.body });
      if (w.framing === "gzip") headers["connect-content-encoding"] = "gzip";
    } else {
      contentType = protocol === "connect-json" ? "application/json" : "application/proto";
      body = Buffer.from(protocol === "connect-json" ? (w.json ?? "{}") : w.body);
      if (w.framing === "gzip") {
        headers["content-encoding"] = "gzip";
        body = gzipSync(body).subarray(0, Math.max(10, body.length));
      } else if (w.framing === "truncated" && body.length > 1) {
        body = body.subarray(0, body.length - 1);
      }
    }
    if (w.contentType !== undefined) contentType = w.contentType;
    if (contentType) headers["content-type"] = contentType;
    if (protocol !== "grpc-web" && protocol !== "connect-get") headers["connect-protocol-version"] = "1";
    if (w.framing === "bad-timeout") headers[protocol === "grpc-web" ? "grpc-timeout" : "connect-timeout-ms"] = "forever";
    if (key) headers.authorization = `Bearer ${key}`;
    headers["content-length"] = body.length;
    return new Promise((resolve, reject) => {
      const req = http.request({ host: "127.0.0.1", port: this.target.httpPort, path: path + query, method: httpMethod, headers, agent: this.agent });
      const timer = setTimeout(() => {
        req.destroy();
        resolve({ code: "open", message: "" });
      }, 1500);
      req.on("error", (err) => {
        clearTimeout(timer);
        reject(err);
      });
      req.on("response", (res) => {
        const chunks: Buffer[] = [];
        let total = 0;
        const finish = () => {
          clearTimeout(timer);
          resolve(readHttpAnswer(protocol, streaming, res, Buffer.concat(chunks)));
        };
        res.on("data", (c: Buffer) => {
          chunks.push(c);
          total += c.length;
          // A healthy stream never ends by itself: its first message is an answer.
          if (streaming && res.statusCode === 200 && total > 5) {
            req.destroy();
            finish();
          }
        });
        res.on("end", finish);
        res.on("error", () => finish());
      });
      req.end(body);
    });
  }
}

function codeName(status: string): string {
  return CODE_NAMES[Number(status)] ?? `grpc ${status}`;
}

function safeJson(desc: DescMessage, m: Message): string | undefined {
  try {
    return toJsonString(desc, m);
  } catch {
    return undefined;
  }
}

function readHttpAnswer(protocol: Protocol, streaming: boolean, res: http.IncomingMessage, body: Buffer): { code: string; message: string } {
  const status = res.statusCode ?? 0;
  if (protocol === "grpc-web") {
    const grpcStatus = res.headers["grpc-status"];
    if (grpcStatus !== undefined) return { code: codeName(String(grpcStatus)), message: String(res.headers["grpc-message"] ?? "") };
    // Trailers travel in the body, in a frame flagged 0x80.
    for (let i = 0; i + 5 <= body.length; ) {
      const len = body.readUInt32BE(i + 1);
      if (body[i]! & 0x80) {
        const text = body.subarray(i + 5, i + 5 + len).toString();
        const m = /grpc-status:\s*(\d+)/i.exec(text);
        const msg = /grpc-message:\s*(.*)/i.exec(text);
        if (m) return { code: codeName(m[1]!), message: decodeURIComponent(msg?.[1]?.trim() ?? "") };
      }
      i += 5 + len;
    }
    if (status === 200 && body.length > 0) return { code: "ok (streaming)", message: "" };
    return { code: `http ${status}`, message: "" };
  }
  if (streaming && status === 200) {
    // Connect streaming: the end-of-stream frame (flag 0x02) holds an error, if any.
    for (let i = 0; i + 5 <= body.length; ) {
      const len = body.readUInt32BE(i + 1);
      if (body[i]! & 0x02) {
        try {
          const end = JSON.parse(body.subarray(i + 5, i + 5 + len).toString()) as { error?: { code: string; message?: string } };
          return end.error ? { code: end.error.code, message: end.error.message ?? "" } : { code: "ok", message: "" };
        } catch {
          return { code: "bad end frame", message: "" };
        }
      }
      i += 5 + len;
    }
    return { code: "ok (streaming)", message: "" };
  }
  if (status === 200) return { code: "ok", message: "" };
  try {
    const e = JSON.parse(body.toString()) as { code?: string; message?: string };
    if (e.code) return { code: e.code, message: e.message ?? "" };
  } catch {
    // Not a Connect error body.
  }
  return { code: `http ${status}`, message: body.toString().slice(0, 200) };
}

/** Runs `count` requests from `seed`, `concurrency` at a time; samples the server's RSS as it goes. */
export async function runFuzz(
  f: Fuzzer,
  opts: { seed: number; count: number; concurrency: number; serverPid?: number; onProgress?: (done: number) => void },
): Promise<{ peakRss: number }> {
  let peakRss = opts.serverPid ? rss(opts.serverPid) : 0;
  let next = 0;
  const worker = async (w: number) => {
    const rng = new Rng(opts.seed * 1000 + w);
    while (next < opts.count) {
      const i = next++;
      await f.one(rng);
      if (opts.serverPid && i % 200 === 0) peakRss = Math.max(peakRss, rss(opts.serverPid));
      if (opts.onProgress && i % 5000 === 0) opts.onProgress(i);
    }
  };
  await Promise.all(Array.from({ length: opts.concurrency }, (_, w) => worker(w)));
  if (opts.serverPid) peakRss = Math.max(peakRss, rss(opts.serverPid));
  return { peakRss };
}
