import type http from "node:http";
import type http2 from "node:http2";
import { gzipSync } from "node:zlib";
import type { Logger } from "pino";
import { DomainError } from "../domain/errors.js";
import { signedCheckpoint } from "../domain/audit.js";
import { entryBytes, storedContent } from "../audit/encoding.js";
import { TILE_WIDTH, encodeEntryBundle, parseTilePath, type TilePath } from "../audit/tiles.js";
import { listAuditEntries } from "../store/audit.js";
import type { AppContext } from "./context.js";
import { peerOf } from "./limits.js";

type Req = http.IncomingMessage | http2.Http2ServerRequest;
type Res = http.ServerResponse | http2.Http2ServerResponse;

// The log as C2SP tlog-tiles on the HTTP port. The log holds identity events (agent and token
// ids, who revoked what), so by default only API keys read it: the checkpoint and hash tiles
// with any role (hashes, as GetConsistencyProof serves), entry bundles with an admin key (every
// entry of every audience). AGENTID_AUDIT_TILES_PUBLIC=true serves all of it to anyone.

const IMMUTABLE = "max-age=31536000, immutable";

function send(res: Res, status: number, headers: Record<string, string>, body: string | Buffer): void {
  res.writeHead(status, { "content-length": String(Buffer.byteLength(body)), ...headers });
  res.end(body);
}

function text(res: Res, status: number, message: string, headers: Record<string, string> = {}): void {
  send(res, status, { "content-type": "text/plain; charset=utf-8", ...headers }, `${message}\n`);
}

/** Whether the caller may read: undefined if so, else the status and message to answer. */
async function denied(ctx: AppContext, req: Req, entries: boolean): Promise<[number, string] | undefined> {
  if (ctx.config.auditTilesPublic) return undefined;
  const header = req.headers.authorization;
  let caller;
  try {
    caller = await ctx.auth.authenticate(Array.isArray(header) ? header[0] : header, peerOf(req));
  } catch (err) {
    if (err instanceof DomainError) return [401, err.message];
    throw err;
  }
  if (!caller) return [401, 'missing credentials: send "authorization: Bearer <api key>"'];
  if (caller.kind !== "key") return [403, "the log's tiles are read with an API key"];
  if (entries && caller.role !== "admin") return [403, `role ${caller.role} may not read entry bundles (allowed: admin)`];
  return undefined;
}

async function tile(ctx: AppContext, t: TilePath): Promise<Buffer | undefined> {
  const tree = ctx.audit.storedTree;
  if (t.level !== undefined) return tree.tile(t.level, t.index, t.width);
  const from = t.index * TILE_WIDTH;
  if (from + t.width > tree.size) return undefined;
  const rows = await listAuditEntries(ctx.db, { fromSeq: BigInt(from), limit: t.width });
  if (rows.length !== t.width || rows.some((r, i) => r.seq !== BigInt(from + i))) return undefined;
  return encodeEntryBundle(rows.map((r) => entryBytes(storedContent(r))));
}

/** Answers /checkpoint and /tile/...; returns false for any other path. */
export function tilesRoute(ctx: AppContext, logger: Logger): (req: Req, res: Res) => boolean {
  return (req, res) => {
    const path = req.url?.split("?", 2)[0] ?? "";
    const tilePath = path.startsWith("/tile/") ? path.slice("/tile/".length) : undefined;
    if (path !== "/checkpoint" && tilePath === undefined) return false;
    void (async () => {
      if (req.method !== "GET" && req.method !== "HEAD") return text(res, 405, "use GET", { allow: "GET, HEAD" });
      const t = tilePath === undefined ? undefined : parseTilePath(tilePath);
      if (tilePath !== undefined && !t) return text(res, 404, "not a tile path (C2SP tlog-tiles: /tile/<L>/<N>[.p/<W>])");
      const no = await denied(ctx, req, t !== undefined && t.level === undefined);
      if (no) return text(res, no[0], no[1], no[0] === 401 ? { "www-authenticate": "Bearer" } : {});
      const cache = ctx.config.auditTilesPublic ? "public" : "private";
      if (!t) {
        try {
          const cp = await signedCheckpoint(ctx.audit);
          return send(res, 200, { "content-type": "text/plain; charset=utf-8", "cache-control": "no-cache" }, cp.note);
        } catch (err) {
          if (err instanceof DomainError) return text(res, 503, err.message, { "cache-control": "no-store" });
          throw err;
        }
      }
      let body = await tile(ctx, t);
      if (!body) {
        // Perhaps signed by another replica a moment ago.
        await ctx.audit.sync();
        body = await tile(ctx, t);
      }
      if (!body) return text(res, 404, "no such tile in the log yet", { "cache-control": "no-store" });
      const headers: Record<string, string> = { "content-type": "application/octet-stream", "cache-control": `${cache}, ${IMMUTABLE}` };
      const accept = req.headers["accept-encoding"];
      if (t.level === undefined && typeof accept === "string" && /\bgzip\b/.test(accept)) {
        body = gzipSync(body);
        headers["content-encoding"] = "gzip";
      }
      return send(res, 200, headers, body);
    })().catch((err: unknown) => {
      logger.error({ err, path }, "tile request failed");
      if (!res.headersSent) text(res, 500, "internal error");
      else res.end();
    });
    return true;
  };
}
