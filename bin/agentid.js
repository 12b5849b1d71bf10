#!/usr/bin/env node
// Runs the CLI from dist/agentid.js (see build.js), rebuilding it first when src/ or gen/ changed.
// Without esbuild (it comes with tsx), falls back to running the TypeScript through tsx.
import { pathToFileURL } from "node:url";
import { build, bundle, isStale } from "./build.js";

let ready = true;
if (isStale()) {
  try {
    await build();
  } catch (err) {
    ready = false;
    if (process.env.AGENTID_DEBUG) console.error(`agentid: building dist/ failed, running from source: ${err.message}`);
  }
}
if (ready) {
  await import(pathToFileURL(bundle).href);
} else {
  const { register } = await import("tsx/esm/api");
  register();
  await import("../src/cli/main.ts");
}
