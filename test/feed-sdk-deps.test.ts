// The resource-server SDK (src/client) depends only on what a resource server needs (issue 11.8):
// generated code, Connect/protobuf, Node built-ins, and the tiny pure helpers it shares with the
// server (token checksum, proof payload). No server, store, feed or database code.
import { readFileSync } from "node:fs";
import { dirname, relative, resolve } from "node:path";
import { describe, expect, it } from "vitest";

const root = resolve(import.meta.dirname, "..");
const SHARED_PURE_HELPERS = ["src/domain/ids.ts", "src/domain/proof.ts"];
const ALLOWED_PACKAGES = /^(node:|@connectrpc\/|@bufbuild\/)/;

function imports(file: string): string[] {
  const src = readFileSync(file, "utf8");
  return [...src.matchAll(/(?:^|\n)\s*(?:import|export)[^;]*?from\s+"([^"]+)"/g)].map((m) => m[1]!);
}

describe("SDK dependencies", () => {
  it("reach nothing beyond gen/, Connect, protobuf, Node and the shared pure helpers", () => {
    const seen = new Set<string>();
    const packages = new Set<string>();
    const todo = [resolve(root, "src/client/index.ts")];
    while (todo.length) {
      const f = todo.pop()!;
      if (seen.has(f)) continue;
      seen.add(f);
      for (const spec of imports(f)) {
        if (!spec.startsWith(".")) {
          packages.add(spec);
          continue;
        }
        todo.push(resolve(dirname(f), spec.replace(/\.js$/, ".ts")));
      }
    }
    const files = [...seen].map((f) => relative(root, f)).sort();
    expect(files).toContain("src/client/verifier.ts");
    const outside = files.filter((f) => !f.startsWith("src/client/") && !f.startsWith("gen/") && !SHARED_PURE_HELPERS.includes(f));
    expect(outside).toEqual([]);
    expect([...packages].filter((p) => !ALLOWED_PACKAGES.test(p))).toEqual([]);
  });
});
