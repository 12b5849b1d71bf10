import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { create, ScalarType, toJsonString, type DescField, type DescMessage, type DescMethod } from "@bufbuild/protobuf";
import { TimestampSchema } from "@bufbuild/protobuf/wkt";
import { AuditService } from "../gen/agentid/v1/audit_pb.js";
import { ActivityService } from "../gen/agentid/v1/activity_pb.js";
import { AgentService } from "../gen/agentid/v1/agent_pb.js";
import { KeyService, Role } from "../gen/agentid/v1/key_pb.js";
import { TokenService } from "../gen/agentid/v1/token_pb.js";
import { publicKey, startHarness, type Harness } from "./support/harness.js";
import { METHODS } from "./support/fuzz.js";

// Bad input is INVALID_ARGUMENT (or OUT_OF_RANGE) naming the field, never INTERNAL: issue 9.9.

let h: Harness;
let agentId: string;
beforeAll(async () => {
  h = await startHarness();
  agentId = (await h.grpc.agents.registerAgent({ name: "bad-input", publicKey: publicKey() })).agent!.agentId;
});
afterAll(() => h?.close());

async function error(p: Promise<unknown>): Promise<ConnectError> {
  try {
    await p;
  } catch (err) {
    return ConnectError.from(err);
  }
  throw new Error("expected an error");
}

function expectNamed(err: ConnectError, field: string, codes = [Code.InvalidArgument]): void {
  expect(codes, `${Code[err.code]}: ${err.rawMessage}`).toContain(err.code);
  expect(err.rawMessage.startsWith(`${field}:`) || err.rawMessage.startsWith(`${field}[`), err.rawMessage).toBe(true);
}

const transports = ["grpc", "connect"] as const;
const transport = (t: (typeof transports)[number]): Transport => (t === "grpc" ? h.grpcTransport : h.connectTransport);

// base64url("9999999999999999999"): 19 digits, beyond PostgreSQL's bigint.
const NINETEEN_NINES = Buffer.from("9999999999999999999").toString("base64url");
const ts = (seconds: bigint) => create(TimestampSchema, { seconds, nanos: 0 });

describe.each(transports)("bad input over %s", (t) => {
  it("page tokens that decode to 19-digit numbers", async () => {
    expectNamed(await error(createClient(AgentService, transport(t)).listAgents({ pageToken: NINETEEN_NINES })), "page_token");
    expectNamed(await error(createClient(AuditService, transport(t)).listEntries({ pageToken: NINETEEN_NINES })), "page_token");
    expectNamed(await error(createClient(AuditService, transport(t)).listCheckpoints({ pageToken: NINETEEN_NINES })), "page_token");
  });

  it("timestamps far outside the representable range", async () => {
    const audit = createClient(AuditService, transport(t));
    const activity = createClient(ActivityService, transport(t));
    for (const seconds of [10n ** 15n, -(10n ** 15n), 253402300800n, -62135596801n]) {
      expectNamed(await error(audit.listEntries({ since: ts(seconds) })), "since");
      expectNamed(await error(audit.listEntries({ until: ts(seconds) })), "until");
      expectNamed(await error(activity.listTrustScores({ agentId, since: ts(seconds) })), "since");
      expectNamed(await error(activity.listTrustScores({ agentId, until: ts(seconds) })), "until");
    }
    expectNamed(await error(audit.listEntries({ since: create(TimestampSchema, { seconds: 0n, nanos: -1 }) })), "since");
  });

  it("free text that could rewrite a terminal (controls, newlines, tabs, ESC, C1, bidi overrides) on every free-text field", async () => {
    const agents = createClient(AgentService, transport(t));
    const tokens = createClient(TokenService, transport(t));
    const keys = createClient(KeyService, transport(t));
    const activity = createClient(ActivityService, transport(t));
    for (const bad of ["line\n2026-12-07T00:00:00.000Z  revoked by admin", "a\tb", "\u001b[2J", "\u009b31m", "\u007f", "evil\u202etxt.exe", "\u2066x\u2069", "\u200fx", "a\u2028b"]) {
      const why = JSON.stringify(bad);
      const revoke = await error(tokens.revoke({ target: { case: "agentId", value: agentId }, reason: bad }));
      expectNamed(revoke, "reason");
      expect(revoke.rawMessage, why).toMatch(/control|direction/);
      expectNamed(await error(agents.registerAgent({ name: bad, publicKey: publicKey() })), "name");
      expectNamed(await error(agents.registerAgent({ name: "ok", publicKey: publicKey(), labels: { team: bad } })), "labels");
      expectNamed(await error(keys.createApiKey({ name: bad, role: Role.ISSUER })), "name");
      expectNamed(await error(activity.reportActivity({ agentId, kind: 2, detail: bad })), "detail");
    }
    // The agent is still active: nothing was half-written.
    expect((await agents.getAgent({ agentId })).agent!.status).toBe(1);
  });

  it("a registration whose log entry would not fit is INVALID_ARGUMENT naming the field, within the documented limits", async () => {
    const agents = createClient(AgentService, transport(t));
    const labels = Object.fromEntries(Array.from({ length: 64 }, (_, i) => [`label-${i}`, "v".repeat(256)]));
    const big = await error(agents.registerAgent({ name: "big labels", publicKey: publicKey(), labels }));
    expectNamed(big, "labels");
    const quoted = Array.from({ length: 64 }, (_, i) => `${i}${'"'.repeat(120)}`);
    expectNamed(await error(agents.registerAgent({ name: "quoted scopes", publicKey: publicKey(), allowedScopes: quoted })), "allowed_scopes");
    // Just within the bound, registration works and is logged.
    const fits = Object.fromEntries(Array.from({ length: 24 }, (_, i) => [`label-${i}`, "v".repeat(256)]));
    expect((await agents.registerAgent({ name: "fits", publicKey: publicKey(), labels: fits })).agent!.labels).toEqual(fits);
  });

  it("a NUL in ReportActivity's detail", async () => {
    const activity = createClient(ActivityService, transport(t));
    expectNamed(await error(activity.reportActivity({ agentId, kind: 2, detail: "a\u0000b" })), "detail");
  });
});

/** Every string field of a message, as paths of fields from the top. */
function stringPaths(desc: DescMessage, prefix: DescField[] = [], depth = 0): DescField[][] {
  if (depth > 3) return [];
  const out: DescField[][] = [];
  for (const f of desc.fields) {
    const isString = (f.fieldKind === "scalar" || f.fieldKind === "list") && f.scalar === ScalarType.STRING;
    if (isString || f.fieldKind === "map") out.push([...prefix, f]);
    if ((f.fieldKind === "message" || (f.fieldKind === "list" && f.listKind === "message")) && f.message.typeName.startsWith("agentid.")) {
      out.push(...stringPaths(f.message, [...prefix, f], depth + 1));
    }
  }
  return out;
}

/** A request whose only content is `bad` at the end of `path` (in a list, a map key or value). */
function requestWith(method: DescMethod, path: DescField[], bad: string, mapSide: "key" | "value"): { req: Record<string, unknown>; field: string } {
  const req: Record<string, unknown> = {};
  let at = req;
  const names: string[] = [];
  path.forEach((f, i) => {
    const last = i === path.length - 1;
    let value: unknown;
    if (!last) value = {};
    else if (f.fieldKind === "list") value = [bad];
    else if (f.fieldKind === "map") value = mapSide === "key" ? { [bad]: "v" } : { k: bad };
    else value = bad;
    const holder = f.fieldKind === "list" && !last ? [value] : value;
    if (f.oneof) at[f.oneof.localName] = { case: f.localName, value: holder };
    else at[f.localName] = holder;
    names.push(f.fieldKind === "list" && !last ? `${f.name}[0]` : f.name);
    if (!last) at = value as Record<string, unknown>;
  });
  const lastField = path[path.length - 1]!;
  const field = names.join(".") + (lastField.fieldKind === "list" ? "[0]" : "");
  return { req, field };
}

const cases: { name: string; method: DescMethod; path: DescField[]; mapSide: "key" | "value" }[] = [];
for (const m of METHODS) {
  for (const path of stringPaths(m.input)) {
    const last = path[path.length - 1]!;
    const sides: ("key" | "value")[] = last.fieldKind === "map" ? ["key", "value"] : ["value"];
    for (const side of sides) {
      cases.push({ name: `${m.parent.name}.${m.name} ${path.map((f) => f.name).join(".")}${last.fieldKind === "map" ? ` (${side})` : ""}`, method: m, path, mapSide: side });
    }
  }
}

describe.each(transports)("every text field of every request over %s", (t) => {
  it.each(cases.map((c) => [c.name, c] as const))("%s: NUL is INVALID_ARGUMENT naming the field", async (_name, c) => {
    const { req, field } = requestWith(c.method, c.path, "a\u0000b", c.mapSide);
    const client = createClient(c.method.parent, transport(t)) as unknown as Record<string, (r: unknown) => unknown>;
    const call = client[c.method.localName]!(create(c.method.input, req as never));
    const err = await error(
      c.method.methodKind === "server_streaming"
        ? (async () => {
            for await (const _ of call as AsyncIterable<unknown>) break;
          })()
        : (call as Promise<unknown>),
    );
    expectNamed(err, field);
  });

  // Binary protobuf cannot carry a lone surrogate (UTF-8 has no form for one), and connect-es
  // replaces one before sending; Connect's JSON can carry one as a \u escape: sent raw here.
  it.runIf(t === "connect").each(cases.map((c) => [c.name, c] as const))("%s: a lone surrogate is INVALID_ARGUMENT naming the field", async (_name, c) => {
    const { req, field } = requestWith(c.method, c.path, "a\u0000b", c.mapSide);
    const json = toJsonString(c.method.input, create(c.method.input, req as never)).replace("\\u0000", "\\ud800");
    expect(json).toContain("\\ud800");
    const res = await fetch(`http://127.0.0.1:${h.server.httpPort}/${c.method.parent.typeName}/${c.method.name}`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${h.adminKey}` },
      body: json,
    });
    const body = (await res.json()) as { code: string; message: string };
    expect(body.code, body.message).toBe("invalid_argument");
    const last = c.path[c.path.length - 1]!;
    // Named by the central check (scopes[0]: ...), or by protobuf-es's JSON reader (...Request.scopes from JSON).
    expect(body.message.startsWith(field.replace(/\[0\]$/, "")) || body.message.includes(`.${last.name} from JSON`), body.message).toBe(true);
  });
});
