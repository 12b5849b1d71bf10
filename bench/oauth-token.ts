// Tokens per second from the OAuth token endpoint (client_credentials with private_key_jwt: the
// agent signs a JWT with jose, POST /oauth2/token) against agentid's Issue RPC on the same HTTP
// port, in one run, in alternating slices: Issue signed by the agent itself (the same credential,
// agentid's own proof format) and Issue with an issuer key (no signature at all). Both sides sign
// in this process, as an agent would; the server is its own process on its own PostgreSQL.
// Run: npx tsx bench/oauth-token.ts [--full]
import { generateKeyPairSync, type KeyObject } from "node:crypto";
import { SignJWT } from "jose";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { AgentService } from "../gen/agentid/v1/agent_pb.js";
import { TokenService } from "../gen/agentid/v1/token_pb.js";
import { KeyService, Role } from "../gen/agentid/v1/key_pb.js";
import { API_KEY_PREFIX, newSecret } from "../src/domain/ids.js";
import { signedIssueRequest } from "../src/client/self-issue.js";
import { startAgentid } from "./lib/procs.js";
import { startOwnPostgres } from "./lib/cluster.js";
import { bearer } from "./lib/clients.js";
import { alternate, alternateOptions } from "./lib/alternate.js";

export interface OAuthTokenResult {
  oauthPerSecond: number;
  selfIssuePerSecond: number;
  keyIssuePerSecond: number;
}

export async function oauthToken(full: boolean): Promise<OAuthTokenResult> {
  const pg = await startOwnPostgres();
  const adminKey = newSecret(API_KEY_PREFIX);
  let server: Awaited<ReturnType<typeof startAgentid>> | undefined;
  try {
    // BENCH_PROFILE=dir writes the server's CPU profile there, as in run.ts.
    const profile = process.env.BENCH_PROFILE ? ["--cpu-prof", `--cpu-prof-dir=${process.env.BENCH_PROFILE}`] : [];
    server = await startAgentid(
      {
        DATABASE_URL: pg.url,
        AGENTID_ADMIN_KEY: adminKey,
        AGENTID_DB_POOL_SIZE: "20",
        LOG_LEVEL: "warn",
        // One client address makes every request here: the per-address allowances are not under test.
        AGENTID_ANONYMOUS_ISSUE_PER_MINUTE: "1000000",
      },
      profile,
    );
    const admin = createConnectTransport({ baseUrl: server.url, httpVersion: "1.1", interceptors: [bearer(adminKey)] });
    const issuerKey = (await createClient(KeyService, admin).createApiKey({ name: "bench issuer", role: Role.ISSUER })).secret;
    const issuer = (await (await fetch(`${server.url}/.well-known/oauth-authorization-server`)).json()) as { issuer: string; token_endpoint: string };
    // 64 agents, used in turn: nonces and jtis are kept per agent, as a fleet would spread them.
    const agents: { id: string; deploymentId: string; key: KeyObject }[] = [];
    for (let i = 0; i < 64; i++) {
      const { publicKey, privateKey } = generateKeyPairSync("ed25519");
      const raw = publicKey.export({ type: "spki", format: "der" }).subarray(-32);
      const { agent } = await createClient(AgentService, admin).registerAgent({ name: `bench ${i}`, publicKey: raw, allowedScopes: ["read"], allowedAudiences: ["bench"] });
      agents.push({ id: agent!.agentId, deploymentId: agent!.deploymentId, key: privateKey });
    }
    const anonymous = createClient(TokenService, createConnectTransport({ baseUrl: server.url, httpVersion: "1.1" }));
    const withKey = createClient(TokenService, createConnectTransport({ baseUrl: server.url, httpVersion: "1.1", interceptors: [bearer(issuerKey)] }));
    const now = () => Math.floor(Date.now() / 1000);
    const sides = {
      oauth: async (i: number) => {
        const a = agents[i % agents.length]!;
        const assertion = await new SignJWT({ iss: a.id, sub: a.id, aud: issuer.issuer, iat: now(), exp: now() + 60, jti: crypto.randomUUID() })
          .setProtectedHeader({ alg: "EdDSA" })
          .sign(a.key);
        const res = await fetch(issuer.token_endpoint, {
          method: "POST",
          body: new URLSearchParams({
            grant_type: "client_credentials",
            client_assertion_type: "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            client_assertion: assertion,
            scope: "read",
            resource: "bench",
          }),
        });
        const body = (await res.json()) as { access_token?: string; error_description?: string };
        if (!body.access_token) throw new Error(`token endpoint: ${res.status} ${body.error_description}`);
      },
      selfIssue: async (i: number) => {
        const a = agents[i % agents.length]!;
        await anonymous.issue(signedIssueRequest({ deploymentId: a.deploymentId, agentId: a.id, privateKey: a.key, scopes: ["read"], audiences: ["bench"] }));
      },
      keyIssue: async (i: number) => {
        await withKey.issue({ agentId: agents[i % agents.length]!.id, scopes: ["read"], audiences: ["bench"] });
      },
    };
    const options = alternateOptions({ concurrency: 16, sliceMs: 500, slices: full ? 20 : 6 });
    // Warm up every path (JIT, pools, connections), then measure.
    await alternate(sides, { ...options, slices: 1, sliceMs: 300 });
    const r = await alternate(sides, options);
    return { oauthPerSecond: r.oauth, selfIssuePerSecond: r.selfIssue, keyIssuePerSecond: r.keyIssue };
  } finally {
    // Also when the server failed to start: no PostgreSQL is left behind.
    await server?.stop();
    await pg.destroy();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const r = await oauthToken(process.argv.includes("--full"));
  const f = (n: number) => Math.round(n).toLocaleString("en-US");
  console.log(
    [
      `POST /oauth2/token (private_key_jwt, jose-signed): ${f(r.oauthPerSecond)} tokens/s`,
      `Issue RPC signed by the agent (Connect, HTTP/1.1):  ${f(r.selfIssuePerSecond)} tokens/s -> ratio ${(r.oauthPerSecond / r.selfIssuePerSecond).toFixed(2)}x`,
      `Issue RPC with an issuer key (Connect, HTTP/1.1):   ${f(r.keyIssuePerSecond)} tokens/s -> ratio ${(r.oauthPerSecond / r.keyIssuePerSecond).toFixed(2)}x`,
    ].join("\n"),
  );
  process.exit(0);
}
