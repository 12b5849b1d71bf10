import { readFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import type http from "node:http";
import type http2 from "node:http2";

// The console (console/, built by `npm run build:console`, which `npm ci` runs) is served from
// the HTTP port under /console/. It calls the same Connect API as any other client, from the same
// origin, so no CORS is needed. Everything else falls through to the next handler.

type Req = http.IncomingMessage | http2.Http2ServerRequest;
type Res = http.ServerResponse | http2.Http2ServerResponse;
type Handler = (req: Req, res: Res) => void;

const DIST = fileURLToPath(new URL("../../console/dist/", import.meta.url));

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".json": "application/json",
};

const HEADERS = {
  // Scripts and styles only from this origin; API calls only to it.
  "content-security-policy":
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
};

interface File {
  body: Buffer;
  gzip?: Buffer;
  type: string;
}

/** Serves the built console; other requests go to next. */
export function withConsole(next: Handler): Handler {
  // Built files never change while the server runs, except in development: cache per path.
  const cache = new Map<string, Promise<File | undefined>>();
  const load = (rel: string): Promise<File | undefined> => {
    let p = cache.get(rel);
    if (!p) {
      p = readFile(path.join(DIST, rel)).then(
        (body) => {
          const type = TYPES[path.extname(rel)] ?? "application/octet-stream";
          return { body, type, gzip: /^text|svg|json/.test(type) ? gzipSync(body) : undefined };
        },
        () => {
          cache.delete(rel);
          return undefined;
        },
      );
      cache.set(rel, p);
    }
    return p;
  };

  return (req, res) => {
    const url = req.url ?? "/";
    const pathname = url.split("?", 1)[0]!;
    if ((req.method !== "GET" && req.method !== "HEAD") || !(pathname === "/" || pathname === "/console" || pathname.startsWith("/console/"))) {
      next(req, res);
      return;
    }
    if (pathname === "/" || pathname === "/console") {
      res.writeHead(302, { location: "/console/" });
      res.end();
      return;
    }
    let rel = pathname.slice("/console/".length) || "index.html";
    // Only plain names inside dist: no "..", no absolute paths, no hidden files.
    if (!/^[A-Za-z0-9_\-./]+$/.test(rel) || rel.split("/").some((p) => p === "" || p.startsWith("."))) rel = "";
    void (rel ? load(rel) : Promise.resolve(undefined)).then((file) => {
      if (!file) {
        const index = rel === "index.html";
        res.writeHead(index ? 503 : 404, { "content-type": "text/plain; charset=utf-8", ...HEADERS });
        res.end(index ? "The console is not built. Run `npm run build:console` (npm ci runs it).\n" : "Not found\n");
        return;
      }
      const gzip = file.gzip && /\bgzip\b/.test(String(req.headers["accept-encoding"] ?? ""));
      const body = gzip ? file.gzip! : file.body;
      res.writeHead(200, {
        "content-type": file.type,
        "content-length": String(body.byteLength),
        // Asset names carry a content hash; index.html must be revalidated to pick up new ones.
        "cache-control": rel.startsWith("assets/") ? "public, max-age=31536000, immutable" : "no-cache",
        vary: "accept-encoding",
        ...(gzip ? { "content-encoding": "gzip" } : {}),
        ...HEADERS,
      });
      if (req.method === "HEAD") res.end();
      else res.end(body);
    });
  };
}
