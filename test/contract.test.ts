import { execFileSync } from "node:child_process";
import { cpSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

const root = join(import.meta.dirname, "..");
const buf = join(root, "node_modules", ".bin", "buf");

function run(args: string[], cwd = root): string {
  return execFileSync(buf, args, { cwd, encoding: "utf8", env: { ...process.env, PATH: `${join(root, "node_modules", ".bin")}:${process.env.PATH}` } });
}

describe("the protobuf contract", () => {
  it("passes buf lint (STANDARD)", () => {
    expect(run(["lint"])).toBe("");
  });

  it("is buf-formatted", () => {
    expect(run(["format", "-d"])).toBe("");
  });

  it("matches the committed gen/ (run `npm run generate` after editing proto/)", () => {
    const tmp = mkdtempSync(join(tmpdir(), "agentid-gen-"));
    try {
      for (const f of ["proto", "buf.yaml", "buf.gen.yaml"]) cpSync(join(root, f), join(tmp, f), { recursive: true });
      run(["generate"], tmp);
      const diff = (() => {
        try {
          execFileSync("diff", ["-r", join(tmp, "gen"), join(root, "gen")], { encoding: "utf8" });
          return "";
        } catch (err) {
          return (err as { stdout: string }).stdout;
        }
      })();
      expect(diff).toBe("");
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });
});
