// Starts a real `agentid serve` process and fills the fuzzer's pool. No vitest imports: the long
// run (bench/fuzz.ts) uses this too.
import { generateKeyPairSync } from "node:crypto";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { KeyService, Role } from "../../gen/agentid/v1/key_pb.js";
import { CLUSTER_ADMIN_KEY, replicaClients, startReplica, type Replica } from "../../bench/lib/cluster.js";
import { bearer } from "../../bench/lib/clients.js";
import { Fuzzer, type Pool } from "./fuzz.js";

export interface FuzzTarget {
  replica: Replica;
  fuzzer: Fuzzer;
  /** A call that must still succeed after the run: the server is up and serving. */
  alive(): Promise<void>;
}

export async function startFuzzTarget(databaseUrl: string): Promise<FuzzTarget> {
  // Logs at error level only: an "unhandled error" line is a finding, the rest is noise.
  const replica = await startReplica(databaseUrl, { LOG_LEVEL: "error" });
  const c = replicaClients(replica.grpcUrl);
  const keys = createClient(KeyService, createGrpcTransport({ baseUrl: replica.grpcUrl, interceptors: [bearer(CLUSTER_ADMIN_KEY)] }));
  const publicKeys = Array.from({ length: 8 }, () => new Uint8Array(generateKeyPairSync("ed25519").publicKey.export({ type: "spki", format: "der" }).subarray(-32)));
  const { agent } = await c.agents.registerAgent({ name: "fuzz", publicKey: publicKeys[0]!, allowedScopes: ["s"], allowedAudiences: ["a"] });
  const issued = await c.tokens.issue({ agentId: agent!.agentId, scopes: ["s"], audiences: ["a"] });
  const issuer = await keys.createApiKey({ name: "fuzz issuer", role: Role.ISSUER });
  const rs = await keys.createApiKey({ name: "fuzz rs", role: Role.RESOURCE_SERVER, audiences: ["a"] });
  const spare = await keys.createApiKey({ name: "fuzz spare", role: Role.ISSUER });
  const pool: Pool = {
    agentId: agent!.agentId,
    tokenId: issued.tokenId,
    token: issued.token,
    keyId: spare.key!.keyId,
    strings: [agent!.agentId, issued.tokenId, issued.token, spare.key!.keyId, agent!.deploymentId, "s", "a"],
    publicKeys,
  };
  const fuzzer = new Fuzzer(
    {
      grpcPort: Number(new URL(replica.grpcUrl).port),
      httpPort: Number(new URL(replica.httpUrl).port),
      keys: [CLUSTER_ADMIN_KEY, undefined, issuer.secret, rs.secret, "ak_malformed", `${CLUSTER_ADMIN_KEY.slice(0, -1)}x`],
    },
    pool,
  );
  return {
    replica,
    fuzzer,
    alive: async () => {
      // The fuzzer's bad keys come from this address too: past the failed-authentication limit
      // the server answers RESOURCE_EXHAUSTED (itself an answer) until its wait has passed.
      for (let attempt = 0; ; attempt++) {
        try {
          await c.agents.getAgent({ agentId: agent!.agentId });
          return;
        } catch (err) {
          const e = ConnectError.from(err);
          if (e.code !== Code.ResourceExhausted || attempt === 3) throw e;
          await new Promise((r) => setTimeout(r, 1100 * Number(/retry in (\d+)s/.exec(e.rawMessage)?.[1] ?? 1)));
        }
      }
    },
  };
}
