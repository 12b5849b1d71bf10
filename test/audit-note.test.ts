import { generateKeyPairSync } from "node:crypto";
import { describe, expect, it } from "vitest";
import { NoteSigner, checkpointBody, openCheckpoint } from "../src/audit/note.js";
import { parseVerifierKey } from "../src/audit/verify.js";

// Pure logic: the signed-note round trip and verifier key parsing.

describe("signed notes", () => {
  it("parses verifier keys whose base64 contains + and /", () => {
    let seen = 0;
    for (let i = 0; i < 200 && seen < 5; i++) {
      const signer = new NoteSigner("example.com/log", generateKeyPairSync("ed25519").privateKey);
      const vkey = signer.verifierKey;
      if (!vkey.split("+").slice(2).join("+").includes("+")) continue;
      seen++;
      const { name, key } = parseVerifierKey(vkey);
      expect(name).toBe("example.com/log");
      expect(key).toEqual(signer.publicKey);
    }
    expect(seen).toBeGreaterThan(0);
  });

  it("opens what it signs, and refuses other keys and altered notes", () => {
    const signer = new NoteSigner("o", generateKeyPairSync("ed25519").privateKey);
    const other = new NoteSigner("o", generateKeyPairSync("ed25519").privateKey);
    const note = signer.sign(checkpointBody({ origin: "o", treeSize: 5n, rootHash: Buffer.alloc(32, 7) }));
    expect(openCheckpoint(note, "o", signer.publicKey).treeSize).toBe(5n);
    expect(() => openCheckpoint(note, "o", other.publicKey)).toThrow(/no signature/);
    expect(() => openCheckpoint(note.replace("\n5\n", "\n6\n"), "o", signer.publicKey)).toThrow(/does not verify/);
    expect(() => openCheckpoint("garbage", "o", signer.publicKey)).toThrow();
  });
});
