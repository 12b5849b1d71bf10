import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { publicKey, startHarness, type Harness } from "./support/harness.js";

const root = join(import.meta.dirname, "..");
let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(() => h?.close());

type Unary = (req: object, md: grpc.Metadata, cb: (err: grpc.ServiceError | null, res: any) => void) => void; // eslint-disable-line @typescript-eslint/no-explicit-any
function call<T = any>(client: grpc.Client, method: string, req: object, md = new grpc.Metadata()): Promise<T> { // eslint-disable-line @typescript-eslint/no-explicit-any
  return new Promise((resolve, reject) =>
    ((client as unknown as Record<string, Unary>)[method]!).call(client, req, md, (err, res) => (err ? reject(err) : resolve(res))),
  );
}

describe("a client that has only the .proto files", () => {
  it("registers, issues, introspects, watches and revokes with grpc-js + proto-loader", async () => {
    const def = protoLoader.loadSync(
      ["agentid/v1/agent.proto", "agentid/v1/token.proto", "agentid/v1/revocation.proto"],
      { includeDirs: [join(root, "proto")], longs: String, enums: String, defaults: true, oneofs: true },
    );
    const pkg = grpc.loadPackageDefinition(def) as any; // eslint-disable-line @typescript-eslint/no-explicit-any
    const v1 = pkg.agentid.v1;
    // Call credentials need TLS in grpc-js; on this plaintext test port the key goes in metadata.
    const creds = grpc.credentials.createInsecure();
    const md = new grpc.Metadata();
    md.set("authorization", `Bearer ${h.adminKey}`);
    const agents = new v1.AgentService(h.grpcAddress, creds);
    const tokens = new v1.TokenService(h.grpcAddress, creds);
    const revocations = new v1.RevocationService(h.grpcAddress, creds);

    const { agent } = await call(agents, "RegisterAgent", { name: "polyglot", publicKey: Buffer.from(publicKey()), allowedScopes: ["x"] }, md);
    expect(agent.status).toBe("AGENT_STATUS_ACTIVE");
    const issued = await call(tokens, "Issue", { agentId: agent.agentId, scopes: ["x"], ttl: { seconds: 60 } }, md);
    const intro = await call(tokens, "Introspect", { token: issued.token, requiredScope: "x" }, md);
    expect(intro.active).toBe(true);
    expect(intro.inactiveReason).toBe("INACTIVE_REASON_UNSPECIFIED");

    const stream = revocations.WatchRevocations({ afterRevision: 0 }, md);
    const seen = new Promise<any>((resolve) => // eslint-disable-line @typescript-eslint/no-explicit-any
      stream.on("data", (m: any) => { // eslint-disable-line @typescript-eslint/no-explicit-any
        const e = (m.events ?? []).find((x: any) => x.tokenId === issued.tokenId); // eslint-disable-line @typescript-eslint/no-explicit-any
        if (e) resolve(e);
      }),
    );
    stream.on("error", () => {});
    const revoked = await call(tokens, "Revoke", { tokenId: issued.tokenId, reason: "done" }, md);
    const event = await seen;
    expect(event.revision).toBe(revoked.revision);
    stream.cancel();
    const after = await call(tokens, "Introspect", { token: issued.token }, md);
    expect(after.inactiveReason).toBe("INACTIVE_REASON_REVOKED");
    for (const c of [agents, tokens, revocations]) c.close();
  });

  it("answers grpc.health.v1 and server reflection (buf curl needs no proto files)", async () => {
    const { protoPath } = await import("grpc-health-check");
    const health = grpc.loadPackageDefinition(protoLoader.loadSync(protoPath, { enums: String })) as any; // eslint-disable-line @typescript-eslint/no-explicit-any
    const hc = new health.grpc.health.v1.Health(h.grpcAddress, grpc.credentials.createInsecure());
    expect(await call(hc, "Check", { service: "agentid.v1.TokenService" })).toEqual({ status: "SERVING" });
    expect(await call(hc, "Check", { service: "" })).toEqual({ status: "SERVING" });
    hc.close();

    // No --schema: buf curl resolves the method through server reflection.
    const { stdout } = await promisify(execFile)(join(root, "node_modules/.bin/buf"), [
      "curl", "--protocol", "grpc", "--http2-prior-knowledge",
      "-H", `authorization: Bearer ${h.adminKey}`,
      "--data", '{"name":"via-buf-curl","publicKey":"' + Buffer.from(publicKey()).toString("base64") + '"}',
      `http://${h.grpcAddress}/agentid.v1.AgentService/RegisterAgent`,
    ]);
    expect(JSON.parse(stdout).agent.name).toBe("via-buf-curl");
  });
});
