import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import { DurationSchema } from "@bufbuild/protobuf/wkt";
import * as grpc from "@grpc/grpc-js";
import { publicKey, startHarness, type Clients, type Harness } from "./support/harness.js";
import { newAgentId } from "../src/domain/ids.js";
import type { AgentStatus } from "../gen/agentid/v1/agent_pb.js";

let h: Harness;
let agentId: string;
beforeAll(async () => {
  h = await startHarness();
  agentId = (await h.grpc.agents.registerAgent({ name: "valid", publicKey: publicKey() })).agent!.agentId;
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

const key = publicKey();
const cases: [string, (c: Clients) => Promise<unknown>, string][] = [
  ["RegisterAgent without a name", (c) => c.agents.registerAgent({ name: "", publicKey: key }), "name"],
  ["RegisterAgent with a long name", (c) => c.agents.registerAgent({ name: "n".repeat(129), publicKey: key }), "name"],
  ["RegisterAgent with a control character", (c) => c.agents.registerAgent({ name: "a\nb", publicKey: key }), "name"],
  ["RegisterAgent without a key", (c) => c.agents.registerAgent({ name: "a" }), "public_key"],
  ["RegisterAgent with a 31-byte key", (c) => c.agents.registerAgent({ name: "a", publicKey: new Uint8Array(31) }), "public_key"],
  ["RegisterAgent with a non-point key", (c) => c.agents.registerAgent({ name: "a", publicKey: new Uint8Array(32).fill(0xff) }), "public_key"],
  ["RegisterAgent with a bad label key", (c) => c.agents.registerAgent({ name: "a", publicKey: key, labels: { "bad key": "v" } }), "labels"],
  ["GetAgent without an id", (c) => c.agents.getAgent({}), "agent_id"],
  ["GetAgent with a malformed id", (c) => c.agents.getAgent({ agentId: "agt_'; drop table agents" }), "agent_id"],
  ["ListAgents with a huge page", (c) => c.agents.listAgents({ pageSize: 100_000 }), "page_size"],
  ["ListAgents with a negative page", (c) => c.agents.listAgents({ pageSize: -1 }), "page_size"],
  ["ListAgents with a forged page token", (c) => c.agents.listAgents({ pageToken: "bm90IGEgdG9rZW4" }), "page_token"],
  ["ListAgents with an unknown status", (c) => c.agents.listAgents({ status: 42 as AgentStatus }), "status"],
  ["Issue without an agent", (c) => c.tokens.issue({}), "agent_id"],
  ["Issue with a spaced scope", () => h.grpc.tokens.issue({ agentId, scopes: ["a b"] }), "scopes[0]"],
  ["Issue with an empty audience", () => h.grpc.tokens.issue({ agentId, audiences: [""] }), "audiences[0]"],
  ["Issue with too many scopes", () => h.grpc.tokens.issue({ agentId, scopes: Array.from({ length: 65 }, (_, i) => `s${i}`) }), "scopes"],
  ["Issue with a zero TTL", () => h.grpc.tokens.issue({ agentId, ttl: create(DurationSchema, { seconds: 0n }) }), "ttl"],
  ["Issue with a negative TTL", () => h.grpc.tokens.issue({ agentId, ttl: create(DurationSchema, { seconds: -5n }) }), "ttl"],
  ["Issue with a TTL over the maximum", () => h.grpc.tokens.issue({ agentId, ttl: create(DurationSchema, { seconds: 10n ** 9n }) }), "ttl"],
  ["Introspect with a huge token", (c) => c.tokens.introspect({ token: "x".repeat(5000) }), "token"],
  ["Introspect with a spaced scope", (c) => c.tokens.introspect({ token: "at_x", requiredScope: "a b" }), "required_scope"],
  ["Revoke without a target", (c) => c.tokens.revoke({ reason: "r" }), "target"],
  ["Revoke without a reason", () => h.grpc.tokens.revoke({ target: { case: "agentId", value: newAgentId() } }), "reason"],
  ["Revoke a malformed token", (c) => c.tokens.revoke({ target: { case: "token", value: "at_nope" }, reason: "r" }), "token"],
  ["Revoke a malformed token id", (c) => c.tokens.revoke({ target: { case: "tokenId", value: "tok_" }, reason: "r" }), "token_id"],
  ["Revoke a malformed agent id", (c) => c.tokens.revoke({ target: { case: "agentId", value: "agent-1" }, reason: "r" }), "agent_id"],
];

describe.each(["grpc", "connect"] as const)("bad input over %s", (transport) => {
  it.each(cases)("%s is INVALID_ARGUMENT naming the field", async (_name, call, field) => {
    const err = await error(call(h[transport]));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage.startsWith(`${field}:`) || err.rawMessage.startsWith(`${field}[`)).toBe(true);
  });

  it("WatchRevocations with a negative revision is INVALID_ARGUMENT", async () => {
    const err = await error(
      (async () => {
        for await (const _ of h[transport].revocations.watchRevocations({ afterRevision: -1n })) break;
      })(),
    );
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).toContain("after_revision");
  });

  it("WatchRevocations ahead of the log is OUT_OF_RANGE", async () => {
    const err = await error(
      (async () => {
        for await (const _ of h[transport].revocations.watchRevocations({ afterRevision: 1_000_000n })) break;
      })(),
    );
    expect(err.code).toBe(Code.OutOfRange);
  });
});

describe("bytes that are not protobuf", () => {
  it("are INVALID_ARGUMENT on the gRPC port, not INTERNAL", async () => {
    const client = new grpc.Client(h.grpcAddress, grpc.credentials.createInsecure());
    // With a key: a caller without one is refused before its body is read.
    const md = new grpc.Metadata();
    md.set("authorization", `Bearer ${h.adminKey}`);
    const err = await new Promise<grpc.ServiceError>((resolve) =>
      client.makeUnaryRequest(
        "/agentid.v1.AgentService/GetAgent",
        (b: Buffer) => b,
        (b: Buffer) => b,
        Buffer.from([0x0a, 0xff, 0xff, 0xff]),
        md,
        (e) => resolve(e!),
      ),
    );
    client.close();
    expect(err.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(err.details).toContain("agentid.v1.GetAgentRequest");
  });

  it("are INVALID_ARGUMENT on the Connect port", async () => {
    const res = await fetch(`http://127.0.0.1:${h.server.httpPort}/agentid.v1.AgentService/GetAgent`, {
      method: "POST",
      headers: { "content-type": "application/proto", authorization: `Bearer ${h.adminKey}` },
      body: new Uint8Array([0x0a, 0xff, 0xff, 0xff]),
    });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { code: string }).code).toBe("invalid_argument");
  });
});

describe("bad input on the operator services", () => {
  it("names the field", async () => {
    const { createClient } = await import("@connectrpc/connect");
    const { createGrpcTransport } = await import("@connectrpc/connect-node");
    const { KeyService, Role } = await import("../gen/agentid/v1/key_pb.js");
    const { ActivityService, ActivityKind } = await import("../gen/agentid/v1/activity_pb.js");
    const { bearer } = await import("./support/harness.js");
    const transport = createGrpcTransport({ baseUrl: `http://${h.grpcAddress}`, interceptors: [bearer(h.adminKey)] });
    const keys = createClient(KeyService, transport);
    const activity = createClient(ActivityService, transport);
    const cases: [Promise<unknown>, string][] = [
      [keys.createApiKey({ name: "", role: Role.ISSUER }), "name"],
      [keys.createApiKey({ name: "k", role: 9 as typeof Role.ISSUER }), "role"],
      [keys.createApiKey({ name: "k", role: Role.RESOURCE_SERVER, audiences: ["a b"] }), "audiences[0]"],
      [keys.revokeApiKey({ keyId: "nope" }), "key_id"],
      [activity.reportActivity({ agentId: "x", kind: ActivityKind.ANOMALOUS_REQUEST }), "agent_id"],
      [activity.reportActivity({ agentId, kind: ActivityKind.UNSPECIFIED }), "kind"],
      [activity.reportActivity({ agentId, kind: ActivityKind.ANOMALOUS_REQUEST, detail: "d".repeat(2000) }), "detail"],
      [activity.listTrustScores({ agentId, pageSize: 5000 }), "page_size"],
      [activity.getTrustScore({ agentId: "" }), "agent_id"],
      [h.grpc.agents.registerAgent({ name: "a", publicKey: publicKey(), allowedScopes: ["has space"] }), "allowed_scopes[0]"],
    ];
    for (const [p, field] of cases) {
      const err = await error(p);
      expect(err.code, field).toBe(Code.InvalidArgument);
      expect(err.rawMessage.startsWith(field), `${field}: ${err.rawMessage}`).toBe(true);
    }
  });
});
