// nginx auth_request end to end: a real nginx (Debian's nginx-light) in front of a small upstream,
// asking agentid's GET /auth about every request.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { KeyService, Role } from "../gen/agentid/v1/key_pb.js";
import { bearer, publicKey, startHarness, type Harness } from "./support/harness.js";
import { freePort } from "../bench/lib/cluster.js";
import { NGINX, startNginx } from "./support/nginx.js";

if (!NGINX) {
  console.warn("test/nginx.test.ts: skipped: no nginx binary (install it with `apt-get install -y nginx-light`; .ci/run does)");
}

/** The nginx configuration docs/gateways.md shows, with this test's ports, key and folder. */
function nginxConf(o: { dir: string; port: number; agentid: number; upstream: number; key: string; documented: string }): string {
  return `
daemon off;
master_process off;
pid ${o.dir}/nginx.pid;
error_log ${o.dir}/error.log info;
events { worker_connections 64; }
http {
  access_log ${o.dir}/access.log;
  client_body_temp_path ${o.dir}/body;
  proxy_temp_path ${o.dir}/proxy;
  fastcgi_temp_path ${o.dir}/fastcgi;
  uwsgi_temp_path ${o.dir}/uwsgi;
  scgi_temp_path ${o.dir}/scgi;

  upstream orders { server 127.0.0.1:${o.upstream}; }

  ${o.documented}

  server {
    listen 127.0.0.1:${o.port};

    location /orders/ {
      set $agentid_scope "orders:read";
      auth_request /_agentid;
      include ${o.dir}/agentid-upstream.conf;
    }
    location /admin/ {
      set $agentid_scope "orders:admin";
      auth_request /_agentid;
      include ${o.dir}/agentid-upstream.conf;
    }

    # The check: the agent's Authorization header goes along; nginx adds its own key and the
    # location's scope (a subrequest sees the variables its request set).
    location = /_agentid {
      internal;
      proxy_pass http://127.0.0.1:${o.agentid}/auth;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-URI $request_uri;
      proxy_set_header X-Agentid-Api-Key "${o.key}";
      proxy_set_header X-Agentid-Scope $agentid_scope;
    }
  }
}
`;
}

const UPSTREAM_CONF = `
auth_request_set $agentid_agent_id $upstream_http_x_agentid_agent_id;
auth_request_set $agentid_token_id $upstream_http_x_agentid_token_id;
auth_request_set $agentid_scopes $upstream_http_x_agentid_scopes;
auth_request_set $agentid_audiences $upstream_http_x_agentid_audiences;
auth_request_set $agentid_expires_at $upstream_http_x_agentid_expires_at;
proxy_set_header X-Agentid-Agent-Id $agentid_agent_id;
proxy_set_header X-Agentid-Token-Id $agentid_token_id;
proxy_set_header X-Agentid-Scopes $agentid_scopes;
proxy_set_header X-Agentid-Audiences $agentid_audiences;
proxy_set_header X-Agentid-Expires-At $agentid_expires_at;
proxy_pass http://orders;
`;

/**
 * Every nginx block the README and docs/gateways.md show, made runnable: each becomes a server of
 * its own (with its own port and upstream name), with this test's ports and key put in for the
 * placeholders. A block without its own server gets one around it.
 */
async function documentedServers(o: { agentid: number; upstream: number; key: string }): Promise<{ source: string; port: number; conf: string }[]> {
  const out: { source: string; port: number; conf: string }[] = [];
  for (const file of ["README.md", "docs/gateways.md"]) {
    const text = await readFile(new URL(`../${file}`, import.meta.url), "utf8");
    for (const [, block] of text.matchAll(/```nginx\n([\s\S]*?)```/g)) {
      const n = out.length;
      const port = await freePort();
      let conf = block
        .replace(/"ak_\.\.\.[^"]*"/g, `"${o.key}"`)
        .replace(/http:\/\/127\.0\.0\.1:8080\//g, `http://127.0.0.1:${o.agentid}/`)
        .replace(/\borders\b(?=[ ;{])/g, `orders_${n}`)
        .replace(/server 127\.0\.0\.1:8000;/g, `server 127.0.0.1:${o.upstream};`)
        .replace(/listen 80;/g, `listen 127.0.0.1:${port};`);
      if (!/\bserver\s*\{/.test(conf)) conf = `upstream orders_${n} { server 127.0.0.1:${o.upstream}; }\nserver {\n  listen 127.0.0.1:${port};\n${conf}}\n`;
      out.push({ source: `${file} block ${n}`, port, conf });
    }
  }
  return out;
}

describe.skipIf(!NGINX)("nginx auth_request in front of an upstream", () => {
  let h: Harness;
  let dir: string;
  let nginx: Awaited<ReturnType<typeof startNginx>>;
  let upstream: http.Server;
  let front: string;
  let agentId: string;
  let documented: { source: string; port: number }[];
  const seen: http.IncomingHttpHeaders[] = [];

  beforeAll(async () => {
    h = await startHarness();
    const keys = createClient(KeyService, createConnectTransport({ baseUrl: `http://127.0.0.1:${h.server.httpPort}`, httpVersion: "1.1", interceptors: [bearer(h.adminKey)] }));
    const key = (await keys.createApiKey({ name: "nginx", role: Role.RESOURCE_SERVER, audiences: ["orders"] })).secret;
    agentId = (await h.grpc.agents.registerAgent({ name: "nginx agent", publicKey: publicKey(), allowedScopes: ["orders:read"], allowedAudiences: ["orders", "billing"] })).agent!.agentId;

    upstream = http.createServer((req, res) => {
      seen.push(req.headers);
      res.writeHead(200, { "content-type": "text/plain" }).end(`order for ${req.headers["x-agentid-agent-id"]}`);
    });
    await new Promise<void>((r) => upstream.listen(0, "127.0.0.1", r));
    dir = await mkdtemp(join(tmpdir(), "agentid-nginx-"));
    const port = await freePort();
    await writeFile(join(dir, "agentid-upstream.conf"), UPSTREAM_CONF);
    const ports = { agentid: h.server.httpPort, upstream: (upstream.address() as { port: number }).port, key };
    const servers = await documentedServers(ports);
    documented = servers;
    await writeFile(join(dir, "nginx.conf"), nginxConf({ dir, port, ...ports, documented: servers.map((s) => s.conf).join("\n") }));
    nginx = await startNginx(dir, port);
    front = `http://127.0.0.1:${port}`;
  });

  afterAll(async () => {
    await nginx?.stop();
    upstream?.close();
    await h?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const get = (path: string, token?: string) => fetch(front + path, { headers: token ? { authorization: `Bearer ${token}` } : {} });
  const issue = (scopes: string[], audiences = ["orders"]) => h.grpc.tokens.issue({ agentId, scopes, audiences });

  it("lets a valid token through, with the agent's identity for the upstream", async () => {
    const t = await issue(["orders:read"]);
    const res = await get("/orders/42", t.token);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe(`order for ${agentId}`);
    const headers = seen.at(-1)!;
    expect(headers["x-agentid-agent-id"]).toBe(agentId);
    expect(headers["x-agentid-token-id"]).toBe(t.tokenId);
    expect(headers["x-agentid-scopes"]).toBe("orders:read");
  });

  it("refuses no token, an unknown or another audience's token (401) and a missing scope (403)", async () => {
    const before = seen.length;
    const noToken = await get("/orders/42");
    expect(noToken.status).toBe(401);
    expect(noToken.headers.get("www-authenticate")).toBe("Bearer");
    expect((await get("/orders/42", "at_not_a_real_token")).status).toBe(401);
    const other = await issue(["orders:read"], ["billing"]);
    expect((await get("/orders/42", other.token)).status).toBe(401);
    const reader = await issue(["orders:read"]);
    const admin = await get("/admin/settings", reader.token);
    expect(admin.status).toBe(403);
    expect(seen.length).toBe(before);
  });

  it("refuses a revoked token, and a revocation takes effect on the next request", async () => {
    const t = await issue(["orders:read"]);
    expect((await get("/orders/1", t.token)).status).toBe(200);
    await h.grpc.tokens.revoke({ target: { case: "tokenId", value: t.tokenId }, reason: "nginx test" });
    expect((await get("/orders/1", t.token)).status).toBe(401);

    const t2 = await issue(["orders:read"]);
    expect((await get("/orders/2", t2.token)).status).toBe(200);
    await h.grpc.tokens.revoke({ target: { case: "agentId", value: agentId }, reason: "kill switch" });
    expect((await get("/orders/2", t2.token)).status).toBe(401);
  });

  it("hands the upstream only agentid's identity headers, whatever the client sent, with every documented config", async () => {
    expect(documented.map((d) => d.source)).toEqual(["README.md block 0", "docs/gateways.md block 1"]);
    const fresh = await h.grpc.agents.registerAgent({ name: "forger", publicKey: publicKey(), allowedScopes: ["orders:read"], allowedAudiences: ["orders"] });
    const t = await h.grpc.tokens.issue({ agentId: fresh.agent!.agentId, scopes: ["orders:read"], audiences: ["orders"] });
    const forged: [string, string][] = [
      ["X-Agentid-Agent-Id", "agt_forged"],
      ["X-Agentid-Token-Id", "tok_forged"],
      ["X-Agentid-Scopes", "orders:read orders:write admin"],
      ["x-agentid-scopes", "admin"],
      ["X-AGENTID-AUDIENCES", "orders billing admin"],
      ["X-Agentid-Audiences", "billing"],
      ["X-Agentid-Expires-At", "2099-01-01T00:00:00Z"],
    ];
    const expected = {
      "x-agentid-agent-id": fresh.agent!.agentId,
      "x-agentid-token-id": t.tokenId,
      "x-agentid-scopes": "orders:read",
      "x-agentid-audiences": "orders",
      "x-agentid-expires-at": timestampDate(t.expiresAt!).toISOString(),
    };
    for (const { source, port } of [...documented, { source: "this test's config", port: Number(new URL(front).port) }]) {
      const res = await fetch(`http://127.0.0.1:${port}/orders/7`, { headers: [["authorization", `Bearer ${t.token}`], ...forged] });
      expect(res.status, source).toBe(200);
      const got = seen.at(-1)!;
      // Exactly one value each (node joins repeated x- headers with ", "), and it is agentid's.
      const agentidHeaders = Object.fromEntries(Object.entries(got).filter(([k]) => k.startsWith("x-agentid-")));
      expect(agentidHeaders, source).toEqual(expected);
    }
  });
});
