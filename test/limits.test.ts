import http2 from "node:http2";
import net from "node:net";
import { request as httpRequest } from "node:http";
import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { service as healthService } from "grpc-health-check";
import { Kysely, PostgresDialect } from "kysely";
import pg from "pg";
import { bearer, clientsFor, createTestDatabase, grpc, startHarness, type Harness } from "./support/harness.js";
import { StreamRecorder } from "./support/feed.js";
import { Authenticator } from "../src/server/auth.js";
import { peerAddress } from "../src/server/limits.js";
import type { Database } from "../src/store/database.js";
import { spawnServe, type ServeProcess } from "./support/process.js";
import { API_KEY_PREFIX, newSecret } from "../src/domain/ids.js";
import { connectCall, envelope, grpcCall, grpcWebCall, memoryOf, resetPeak, type RawAnswer } from "./support/raw.js";

// A 128 MiB run of zeros gzips to about 130 kB: small on the wire, huge once inflated.
const BOMB = gzipSync(Buffer.alloc(128 * 1024 * 1024), { level: 9 });
const PATH = "/agentid.v1.AgentService/ListAgents";
const UNAUTHENTICATED = 16;
const RESOURCE_EXHAUSTED = 8;

describe("a decompression bomb", () => {
  let s: ServeProcess;
  const admin = newSecret(API_KEY_PREFIX);
  beforeAll(async () => {
    s = await spawnServe({ DATABASE_URL: await createTestDatabase(), AGENTID_ADMIN_KEY: admin, LOG_LEVEL: "warn", AGENTID_MAX_REQUEST_BYTES: String(1024 * 1024) });
  });
  afterAll(() => {
    s?.proc.kill("SIGKILL");
  });

  const senders: [string, (headers: Record<string, string>) => Promise<RawAnswer>][] = [
    ["gRPC port", (h) => grpcCall(s.grpcPort, PATH, envelope(BOMB, true), { "grpc-encoding": "gzip", ...h })],
    ["gRPC over h2c, HTTP port", (h) => grpcCall(s.httpPort, PATH, envelope(BOMB, true), { "grpc-encoding": "gzip", ...h })],
    ["gRPC-Web, HTTP port", (h) => grpcWebCall(s.httpPort, PATH, envelope(BOMB, true), { "grpc-encoding": "gzip", ...h })],
    ["Connect, HTTP port", (h) => connectCall(s.httpPort, PATH, BOMB, { "content-encoding": "gzip", ...h })],
  ];

  it("is refused with no key, a bad key and a good key, on every protocol, and memory stays bounded", async () => {
    resetPeak(s.proc.pid!);
    const before = memoryOf(s.proc.pid!);
    const cases: { key: string; headers: Record<string, string>; want: (number | string)[] }[] = [
      { key: "none", headers: {}, want: [UNAUTHENTICATED, "unauthenticated"] },
      { key: "bad", headers: { authorization: `Bearer ${newSecret(API_KEY_PREFIX)}` }, want: [UNAUTHENTICATED, "unauthenticated"] },
      { key: "good", headers: { authorization: `Bearer ${admin}` }, want: [RESOURCE_EXHAUSTED, "resource_exhausted"] },
    ];
    for (const c of cases) {
      for (const [name, send] of senders) {
        // Several at once, as an attacker would.
        const answers = await Promise.all(Array.from({ length: 4 }, () => send(c.headers)));
        for (const a of answers) expect(c.want, `${name}, ${c.key} key: ${JSON.stringify(a)}`).toContain(a.code);
      }
    }
    const after = memoryOf(s.proc.pid!);
    // One bomb inflated fully would add 128 MiB; 48 of them were sent. The server keeps at most
    // the configured request limit (1 MiB here) per request.
    expect(after.peak - before.rss, `RSS ${before.rss} -> peak ${after.peak}`).toBeLessThan(96 * 1024 * 1024);
    // Still serving.
    const ok = await connectCall(s.httpPort, PATH, Buffer.alloc(0), { authorization: `Bearer ${admin}` });
    expect(ok.code).toBe("ok");
  }, 120_000);

  it("is refused from its headers on Envoy's Check too, when the gateway sends no key or a bad one", async () => {
    const check = "/envoy.service.auth.v3.Authorization/Check";
    const callers: Record<string, string>[] = [{}, { authorization: `Bearer ${newSecret(API_KEY_PREFIX)}` }];
    for (const headers of callers) {
      const a = await grpcCall(s.grpcPort, check, envelope(BOMB, true), { "grpc-encoding": "gzip", ...headers });
      expect(a.code, JSON.stringify(a)).toBe(UNAUTHENTICATED);
    }
  });
});

/** Resolves when the server closes a socket that never sends a byte. */
function silentSocketClosed(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, "127.0.0.1");
    sock.on("error", () => {});
    sock.on("data", () => {}); // an HTTP/2 server greets with SETTINGS; the socket answers nothing
    sock.once("close", () => resolve());
    // A hang guard, not a timing claim: the server was configured to close it after 1 s.
    setTimeout(() => {
      sock.destroy();
      reject(new Error("the server kept a silent connection open"));
    }, 20_000).unref();
  });
}

function grpcStatusOf(err: unknown): number {
  return (err as grpc.ServiceError).code;
}

describe("connections and streams", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({
      config: { handshakeTimeoutMs: 1000, idleTimeoutMs: 2500, http2MaxConcurrentStreams: 7, maxHealthWatchers: 2, maxRequestBytes: 256 * 1024 },
    });
  });
  afterAll(() => h?.close());

  it("closes a connection that never speaks, on both ports", async () => {
    await Promise.all([silentSocketClosed(h.server.httpPort), silentSocketClosed(h.server.grpcPort)]);
  }, 30_000);

  it("closes an HTTP/1.1 connection that sends half its headers and stops", async () => {
    const sock = net.connect(h.server.httpPort, "127.0.0.1");
    sock.on("error", () => {});
    sock.write("POST /agentid.v1.AgentService/ListAgents HTTP/1.1\r\nhost: x\r\n");
    await new Promise<void>((resolve) => sock.once("close", () => resolve()));
  }, 30_000);

  it("keeps watch streams open past the idle timeout: they carry a Progress every second", async () => {
    const streams = [new StreamRecorder(h.grpc), new StreamRecorder(h.connect)];
    // Six bookmarks span more than two idle timeouts.
    for (const s of streams) await s.until((r) => r.progress.length >= 6, 20_000);
    for (const s of streams) expect(s.ended).toBe(false);
    await Promise.all(streams.map((s) => s.stop()));
  }, 30_000);

  it("advertises the HTTP/2 max concurrent streams on both ports", async () => {
    for (const port of [h.server.httpPort, h.server.grpcPort]) {
      const session = http2.connect(`http://127.0.0.1:${port}`);
      session.on("error", () => {});
      const settings = await new Promise<http2.Settings>((resolve) => session.once("remoteSettings", resolve));
      session.destroy();
      expect(settings.maxConcurrentStreams, `port ${port}`).toBe(7);
    }
  });

  it("bounds open grpc.health.v1 Watch streams", async () => {
    const Health = grpc.makeClientConstructor(healthService as grpc.ServiceDefinition, "Health");
    const client = new Health(h.grpcAddress, grpc.credentials.createInsecure()) as unknown as {
      watch(req: object): grpc.ClientReadableStream<{ status: string }>;
      close(): void;
    };
    const open = (): Promise<{ call: grpc.ClientReadableStream<{ status: string }>; result: string | number }> =>
      new Promise((resolve) => {
        const call = client.watch({ service: "" });
        call.once("data", (d: { status: string }) => resolve({ call, result: d.status }));
        call.once("error", (e) => resolve({ call, result: grpcStatusOf(e) }));
      });
    const first = await open();
    const second = await open();
    expect([first.result, second.result]).toEqual(["SERVING", "SERVING"]);
    expect((await open()).result).toBe(grpc.status.RESOURCE_EXHAUSTED);
    // A watcher that leaves frees its place.
    first.call.cancel();
    let again: string | number = grpc.status.RESOURCE_EXHAUSTED;
    for (let i = 0; i < 50 && again === grpc.status.RESOURCE_EXHAUSTED; i++) {
      again = (await open()).result;
      if (again === grpc.status.RESOURCE_EXHAUSTED) await new Promise((r) => setTimeout(r, 20));
    }
    expect(again).toBe("SERVING");
    client.close();
  });

  it("refuses a request body over the limit on both ports, even with a good key", async () => {
    const big = { name: "x".repeat(300 * 1024), publicKey: new Uint8Array(32) };
    for (const t of h.transports) {
      const err = await t.clients.agents.registerAgent(big).catch((e: unknown) => ConnectError.from(e));
      expect(err, t.name).toBeInstanceOf(ConnectError);
      expect((err as ConnectError).code, t.name).toBe(Code.ResourceExhausted);
    }
  });
});

/** Clients on both ports whose connections come from another loopback address. */
function clientsFrom(h: Harness, localAddress: string, key: string | undefined) {
  const interceptors = key ? [bearer(key)] : [];
  return {
    grpc: clientsFor(createGrpcTransport({ baseUrl: `http://${h.grpcAddress}`, interceptors, nodeOptions: { localAddress } as http2.ClientSessionOptions })),
    connect: clientsFor(
      createConnectTransport({ baseUrl: `http://127.0.0.1:${h.server.httpPort}`, httpVersion: "1.1", interceptors, nodeOptions: { localAddress } }),
    ),
  };
}

async function codeOf(p: Promise<unknown>): Promise<Code | "ok"> {
  try {
    await p;
    return "ok";
  } catch (err) {
    return ConnectError.from(err).code;
  }
}

describe("failed authentication", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ config: { authFailuresPerMinute: 5, anonymousIssuePerMinute: 3 } });
  });
  afterAll(() => h?.close());

  it("is limited per peer address; other peers and keys the peer already proved keep working", async () => {
    const proved = h.as(h.adminKey);
    expect(await codeOf(proved.connect.agents.listAgents({}))).toBe("ok");
    const bad = h.as(newSecret(API_KEY_PREFIX));
    const codes: (Code | "ok")[] = [];
    for (let i = 0; i < 5; i++) codes.push(await codeOf((i % 2 ? bad.grpc : bad.connect).agents.listAgents({})));
    expect(codes).toEqual(Array(5).fill(Code.Unauthenticated));
    // The sixth, on either port: refused before any lookup, with how long to wait.
    for (const c of [bad.connect, bad.grpc]) {
      const err = await c.agents.listAgents({}).catch((e: unknown) => ConnectError.from(e));
      expect((err as ConnectError).code).toBe(Code.ResourceExhausted);
      expect((err as ConnectError).rawMessage).toMatch(/too many failed authentications from 127\.0\.0\.1; retry in \d+s/);
    }
    // A key this address has already proved still works from it.
    expect(await codeOf(proved.grpc.agents.listAgents({}))).toBe("ok");
    // Another address, with a good key, on both ports.
    const other = clientsFrom(h, "127.0.0.2", h.adminKey);
    expect(await codeOf(other.connect.agents.listAgents({}))).toBe("ok");
    expect(await codeOf(other.grpc.agents.listAgents({}))).toBe("ok");
  });

  it("counts failures on the HTTP endpoints (RFC 7662, nginx auth_request) against the same per-peer limit", async () => {
    const bad = newSecret(API_KEY_PREFIX);
    const from = (path: string, headers: Record<string, string>) =>
      new Promise<number>((resolve, reject) => {
        const req = httpRequest(
          { host: "127.0.0.1", port: h.server.httpPort, localAddress: "127.0.0.5", path, method: path === "/auth" ? "GET" : "POST", headers },
          (res) => {
            res.resume();
            resolve(res.statusCode!);
          },
        );
        req.on("error", reject);
        req.end(path === "/auth" ? undefined : "token=at_x");
      });
    const introspect = () => from("/oauth2/introspect", { authorization: `Bearer ${bad}`, "content-type": "application/x-www-form-urlencoded" });
    const statuses = [];
    for (let i = 0; i < 3; i++) statuses.push(await introspect());
    for (let i = 0; i < 2; i++) statuses.push(await from("/auth", { "x-agentid-api-key": bad, authorization: "Bearer at_x" }));
    expect(statuses).toEqual([401, 401, 401, 401, 401]);
    // The sixth failure from this address is refused before any lookup, on the gRPC API too.
    expect(await introspect()).toBe(429);
    const err = await clientsFrom(h, "127.0.0.5", bad).grpc.agents.listAgents({}).catch((e: unknown) => ConnectError.from(e));
    expect((err as ConnectError).code).toBe(Code.ResourceExhausted);
  });

  it("bounds Issue calls without an API key per peer address", async () => {
    const anon = clientsFrom(h, "127.0.0.3", undefined);
    const req = { agentId: `agt_${"A".repeat(22)}` };
    const codes: (Code | "ok")[] = [];
    for (let i = 0; i < 4; i++) codes.push(await codeOf((i % 2 ? anon.grpc : anon.connect).tokens.issue(req)));
    expect(codes.slice(0, 3)).not.toContain(Code.ResourceExhausted);
    expect(codes[3]).toBe(Code.ResourceExhausted);
    const elsewhere = clientsFrom(h, "127.0.0.4", undefined);
    expect(await codeOf(elsewhere.grpc.tokens.issue(req))).not.toBe(Code.ResourceExhausted);
  });
});

describe("unknown keys", () => {
  it("cost one database lookup within the negative cache window", async () => {
    const url = await createTestDatabase();
    const h = await startHarness({ databaseUrl: url }); // migrates the database
    const lookups: string[] = [];
    const pool = new pg.Pool({ connectionString: url, max: 2 });
    const db = new Kysely<Database>({
      dialect: new PostgresDialect({ pool }),
      log: (e) => {
        if (e.level === "query" && e.query.sql.includes("api_keys")) lookups.push(e.query.sql);
      },
    });
    try {
      const auth = new Authenticator(db, { failuresPerMinute: 1000 });
      const unknown = `Bearer ${newSecret(API_KEY_PREFIX)}`;
      for (let i = 0; i < 10; i++) {
        await expect(auth.authenticate(unknown, "127.0.0.1:1")).rejects.toThrow("unknown or revoked API key");
      }
      expect(lookups).toHaveLength(1);
      // A known key is still found (and the cache does not confuse the two).
      await expect(auth.authenticate(`Bearer ${h.adminKey}`, "127.0.0.1:1")).resolves.toMatchObject({ kind: "key", role: "admin" });
      expect(lookups).toHaveLength(2);
    } finally {
      await db.destroy();
      await h.close();
    }
  });
});

describe("a burst of failed authentications", () => {
  it("costs at most the allowance in database lookups, even all at once", async () => {
    const url = await createTestDatabase();
    const h = await startHarness({ databaseUrl: url });
    const pool = new pg.Pool({ connectionString: url, max: 2 });
    let lookups = 0;
    const db = new Kysely<Database>({
      dialect: new PostgresDialect({ pool }),
      log: (e) => {
        if (e.level === "query" && e.query.sql.includes("api_keys")) lookups++;
      },
    });
    try {
      const auth = new Authenticator(db, { failuresPerMinute: 5 });
      const results = await Promise.allSettled(
        Array.from({ length: 50 }, () => auth.authenticate(`Bearer ${newSecret(API_KEY_PREFIX)}`, "[::1]:4000")),
      );
      const codes = results.map((r) => (r.status === "rejected" ? (r.reason as { kind: string }).kind : "ok"));
      expect(codes.filter((c) => c === "unauthenticated")).toHaveLength(5);
      expect(codes.filter((c) => c === "resource_exhausted")).toHaveLength(45);
      expect(lookups).toBe(5);
    } finally {
      await db.destroy();
      await h.close();
    }
  });
});

describe("peer addresses", () => {
  it("are the same for one client on both transports, with the port dropped", () => {
    for (const [peer, addr] of [
      ["127.0.0.1:5000", "127.0.0.1"],
      ["ipv4:127.0.0.1:5000", "127.0.0.1"],
      ["[::1]:5000", "0:0:0:0::/64"],
      ["ipv6:[::1]:5000", "0:0:0:0::/64"],
      ["[::ffff:10.0.0.7]:5000", "10.0.0.7"],
      ["ipv6:[::ffff:10.0.0.7]:5000", "10.0.0.7"],
    ]) {
      expect(peerAddress(peer!), peer).toBe(addr);
    }
  });

  it("aggregate IPv6 by /64, so that one network cannot mint fresh allowances from its addresses", () => {
    for (const [peer, addr] of [
      ["[2001:db8:1:2::5]:5000", "2001:db8:1:2::/64"],
      ["ipv6:[2001:db8:1:2:aaaa:bbbb:cccc:dddd]:1", "2001:db8:1:2::/64"],
      ["[2001:DB8:1:2:ffff::1]:9", "2001:db8:1:2::/64"],
      ["[2001:0db8:0001:0002::]:9", "2001:db8:1:2::/64"],
      ["[2001:db8:1:3::5]:5000", "2001:db8:1:3::/64"],
      ["[2001:db8::1]:1", "2001:db8:0:0::/64"],
      ["[fe80::1%eth0]:5", "fe80:0:0:0::/64"],
      ["[::2]:5000", "0:0:0:0::/64"],
    ]) {
      expect(peerAddress(peer!), peer).toBe(addr);
    }
    const auth = new Authenticator(new Kysely<Database>({ dialect: new PostgresDialect({ pool: new pg.Pool({ max: 1 }) }) }), { anonymousPerMinute: 3 });
    for (let i = 1; i <= 3; i++) auth.admitAnonymous(`[2001:db8:1:2::${i}]:4000`, "Issue");
    expect(() => auth.admitAnonymous("[2001:db8:1:2:9:9:9:9]:4000", "Issue")).toThrow(/too many Issue calls/);
    expect(() => auth.admitAnonymous("[2001:db8:1:3::1]:4000", "Issue")).not.toThrow();
  });
});

/**
 * Sends a request whose body is `total` bytes, as fast as the server takes it, and stops when the
 * server closes the connection (HTTP/1.1) or the stream (HTTP/2), or the body is sent.
 */
async function sendHugeBody(port: number, path: string, version: 1 | 2 | "1 chunked", total: number): Promise<{ status: number; sent: number }> {
  const chunked = version === "1 chunked";
  const chunk = chunked ? Buffer.concat([Buffer.from("10000\r\n"), Buffer.alloc(64 * 1024, 0x61), Buffer.from("\r\n")]) : Buffer.alloc(64 * 1024, 0x61);
  if (version !== 2) {
    return new Promise((resolve) => {
      const socket = net.connect(port, "127.0.0.1");
      let sent = 0;
      let head = "";
      let done = false;
      const finish = () => {
        if (done) return;
        done = true;
        socket.destroy();
        resolve({ status: Number(/^HTTP\/1\.1 (\d+)/.exec(head)?.[1] ?? 0), sent });
      };
      socket.on("data", (d) => (head += d.toString("latin1")));
      socket.on("close", finish);
      socket.on("error", finish);
      const length = chunked ? "transfer-encoding: chunked" : `content-length: ${total}`;
      socket.write(`POST ${path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-www-form-urlencoded\r\n${length}\r\n\r\n`);
      const pump = () => {
        while (!done && sent < total) {
          sent += chunk.length;
          if (!socket.write(chunk)) return void socket.once("drain", pump);
        }
        if (sent >= total) setTimeout(finish, 500);
      };
      pump();
    });
  }
  const session = http2.connect(`http://127.0.0.1:${port}`);
  try {
    return await new Promise((resolve) => {
      const stream = session.request({ ":method": "POST", ":path": path, "content-type": "application/x-www-form-urlencoded" });
      let status = 0;
      let sent = 0;
      let done = false;
      const finish = () => {
        if (done) return;
        done = true;
        resolve({ status, sent });
      };
      stream.on("response", (h) => (status = Number(h[":status"])));
      stream.on("close", finish);
      stream.on("error", finish);
      stream.resume();
      const pump = () => {
        while (!done && sent < total) {
          sent += chunk.length;
          if (!stream.write(chunk)) return void stream.once("drain", pump);
        }
        if (sent >= total) stream.end();
      };
      pump();
    });
  } finally {
    session.destroy();
  }
}

describe("a refused request on the plain HTTP routes", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
  });
  afterAll(() => h?.close());

  const TOTAL = 300 * 1024 * 1024;
  it.each(["/oauth2/introspect", "/oauth2/revoke", "/auth", "/metrics", "/checkpoint", "/tile/0/000", "/console/", "/no-such-path"])(
    "%s closes instead of reading a body far over the limit, on HTTP/1.1 (declared or chunked) and HTTP/2",
    async (path) => {
      for (const version of [1, "1 chunked", 2] as const) {
        const r = await sendHugeBody(h.server.httpPort, path, version, TOTAL);
        expect(r.status, `HTTP/${version}`).toBeGreaterThanOrEqual(400);
        // Socket buffers take a few MiB at most; draining took all 300 MiB.
        expect(r.sent, `HTTP/${version}: bytes the server took`).toBeLessThan(32 * 1024 * 1024);
      }
    },
  );

  it("keeps the connection of a request whose body it read, that had none, or whose small body it refused", async () => {
    const body = "token=at_not_a_real_token";
    const ask = (request: string) => new Promise<string>((resolve, reject) => {
      const socket = net.connect(h.server.httpPort, "127.0.0.1");
      let text = "";
      socket.on("data", (d) => {
        text += d.toString("latin1");
        if (text.includes("\r\n\r\n")) (socket.destroy(), resolve(text));
      });
      socket.on("error", reject);
      socket.write(request);
    });
    const auth = `authorization: Bearer ${h.adminKey}`;
    for (const request of [
      `POST /oauth2/introspect HTTP/1.1\r\nhost: x\r\n${auth}\r\ncontent-type: application/x-www-form-urlencoded\r\ncontent-length: ${body.length}\r\n\r\n${body}`,
      `GET /checkpoint HTTP/1.1\r\nhost: x\r\n${auth}\r\n\r\n`,
      `GET /console/ HTTP/1.1\r\nhost: x\r\n\r\n`,
      // Refused from its headers; a small body is read and dropped, so the client gets its answer.
      `POST /oauth2/introspect HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-www-form-urlencoded\r\ncontent-length: ${body.length}\r\n\r\n${body}`,
      `POST /agentid.v1.AgentService/ListAgents HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}`,
      // Chunked, as Connect clients over HTTP/1.1 send a unary call.
      `POST /agentid.v1.AgentService/ListAgents HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n`,
    ]) {
      const answer = await ask(request);
      expect(answer, request).toMatch(/^HTTP\/1\.1 (200|401)/);
      expect(answer.toLowerCase(), request).toContain("connection: keep-alive");
    }
  });

  it("answers a client that is still writing its small chunked body when refused, and keeps its connection", async () => {
    // Under load a Connect client writes its body after the server has refused the call: the
    // connection must still be there for it (and for its next call), not a broken pipe.
    const socket = net.connect(h.server.httpPort, "127.0.0.1");
    let text = "";
    let closed = false;
    socket.on("data", (d) => (text += d.toString("latin1")));
    socket.on("close", () => (closed = true));
    socket.on("error", () => {});
    const responses = async (n: number) => {
      for (let i = 0; i < 100 && (text.match(/HTTP\/1\.1 \d{3} /g) ?? []).length < n; i++) await new Promise((r) => setTimeout(r, 20));
    };
    socket.write(`POST /agentid.v1.AgentService/ListAgents HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n`);
    await responses(1);
    expect(text).toMatch(/^HTTP\/1\.1 401/);
    await new Promise((r) => setTimeout(r, 100));
    socket.write(`2\r\n{}\r\n0\r\n\r\n`);
    socket.write(`GET /console/ HTTP/1.1\r\nhost: x\r\n\r\n`);
    await responses(2);
    expect(closed).toBe(false);
    expect(text.match(/HTTP\/1\.1 \d{3}/g)).toEqual(["HTTP/1.1 401", "HTTP/1.1 200"]);
    socket.destroy();
  });
});
