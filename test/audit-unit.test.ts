import { createHash, generateKeyPairSync } from "node:crypto";
import { describe, expect, it } from "vitest";
import { NoteSigner, checkpointBody, openCheckpoint } from "../src/audit/note.js";
import { parseVerifierKey } from "../src/audit/verify.js";
import { MerkleTree, rootFromInclusionProof, verifyConsistency } from "../src/audit/merkle.js";

// Pure logic: signed notes, verifier keys, and the incremental Merkle tree.

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

describe("MerkleTree", () => {
  // Pure logic: the incremental tree against the RFC 6962 definition, for every size up to 130.
  const sha = (...p: Uint8Array[]) => createHash("sha256").update(Buffer.concat(p)).digest();
  const mth = (l: Buffer[]): Buffer => {
    if (l.length === 0) return sha();
    if (l.length === 1) return l[0]!;
    let k = 1;
    while (k * 2 < l.length) k *= 2;
    return sha(Buffer.from([1]), mth(l.slice(0, k)), mth(l.slice(k)));
  };

  it("matches MTH for every size, and its proofs verify", () => {
    const tree = new MerkleTree();
    const leaves: Buffer[] = [];
    expect(tree.root(0)).toEqual(sha());
    for (let n = 1; n <= 130; n++) {
      const leaf = sha(Buffer.from([0]), Buffer.from(`entry ${n}`));
      leaves.push(leaf);
      tree.append(leaf);
      expect(tree.root().equals(mth(leaves)), `size ${n}`).toBe(true);
    }
    for (const n of [1, 2, 3, 7, 8, 64, 65, 127, 130]) {
      const root = mth(leaves.slice(0, n));
      for (let m = 0; m < n; m++) {
        expect(rootFromInclusionProof(m, n, leaves[m]!, tree.inclusionProof(m, n))?.equals(root), `${m} in ${n}`).toBe(true);
      }
      for (let m = 1; m <= n; m++) {
        expect(verifyConsistency(m, n, mth(leaves.slice(0, m)), root, tree.consistencyProof(m, n)), `${m} -> ${n}`).toBe(true);
      }
    }
    expect(() => tree.root(131)).toThrow(RangeError);
  });
});
