#!/usr/bin/env node
// Bundles the CLI (and the server it starts) from src/ and gen/ into dist/agentid.js with esbuild,
// so a call loads one prepared file instead of transpiling some hundred TypeScript files through
// tsx on every start. Dependencies stay in node_modules (not bundled). dist/ is not committed:
// `npm install` builds it (the "prepare" script), and bin/agentid.js rebuilds it whenever a
// source file is newer, so a checkout never runs stale code.
import { cpSync, existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const outdir = join(root, "dist");
export const bundle = join(outdir, "agentid.js");

function newestMtime(dir) {
  let newest = 0;
  for (const e of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) newest = Math.max(newest, statSync(join(e.parentPath, e.name)).mtimeMs);
  }
  return newest;
}

/** True when dist/agentid.js is missing or older than any file under src/ or gen/. */
export function isStale() {
  if (!existsSync(bundle)) return true;
  const built = statSync(bundle).mtimeMs;
  return ["src", "gen"].some((d) => newestMtime(join(root, d)) > built);
}

export async function build() {
  const { build: esbuild } = await import("esbuild");
  // Built aside and renamed into place: concurrent starts never load a half-written bundle.
  // Code splitting keeps the server (kysely, pg, grpc-js, pino) out of client commands' start.
  const tmp = join(root, `.dist-${process.pid}.tmp`);
  await esbuild({
    entryPoints: { agentid: join(root, "src/cli/main.ts") },
    outdir: tmp,
    bundle: true,
    splitting: true,
    chunkNames: "chunks/[name]-[hash]",
    platform: "node",
    format: "esm",
    target: "node20",
    packages: "external",
    sourcemap: "linked",
    logLevel: "warning",
  });
  mkdirSync(outdir, { recursive: true });
  // Chunks first (content-hashed names, never overwritten with other content), the entry last.
  const chunks = existsSync(join(tmp, "chunks")) ? readdirSync(join(tmp, "chunks")) : [];
  if (chunks.length > 0) cpSync(join(tmp, "chunks"), join(outdir, "chunks"), { recursive: true });
  renameSync(join(tmp, "agentid.js.map"), `${bundle}.map`);
  renameSync(join(tmp, "agentid.js"), bundle);
  rmSync(tmp, { recursive: true, force: true });
  // Earlier builds' chunks, once no process that started from them can still be loading one.
  for (const f of existsSync(join(outdir, "chunks")) ? readdirSync(join(outdir, "chunks")) : []) {
    const path = join(outdir, "chunks", f);
    if (!chunks.includes(f) && Date.now() - statSync(path).mtimeMs > 60_000) rmSync(path, { force: true });
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) await build();
