import { describe, expect, it } from "vitest";
import { base62, isWellFormedToken, newAgentId, newToken, newTokenId, TOKEN_LENGTH } from "../src/domain/ids.js";

// Pure logic: the token format the SDK and secret scanners rely on.
describe("token format", () => {
  it("is at_ + 43 base62 characters + a 6-character base62 CRC32", () => {
    const seen = new Set<string>();
    for (let i = 0; i < 500; i++) {
      const t = newToken();
      expect(t).toMatch(/^at_[0-9A-Za-z]{49}$/);
      expect(t.length).toBe(TOKEN_LENGTH);
      expect(isWellFormedToken(t)).toBe(true);
      seen.add(t);
    }
    expect(seen.size).toBe(500);
  });

  it("rejects any single changed character, wrong prefix, length or alphabet", () => {
    const t = newToken();
    for (let i = 3; i < t.length; i++) {
      const c = t[i] === "a" ? "b" : "a";
      expect(isWellFormedToken(t.slice(0, i) + c + t.slice(i + 1))).toBe(false);
    }
    expect(isWellFormedToken("xt_" + t.slice(3))).toBe(false);
    expect(isWellFormedToken(t + "0")).toBe(false);
    expect(isWellFormedToken(t.slice(0, -1))).toBe(false);
    expect(isWellFormedToken(t.slice(0, 20) + "-" + t.slice(21))).toBe(false);
    expect(isWellFormedToken("")).toBe(false);
  });

  it("pads base62 to a fixed width", () => {
    expect(base62(0n, 3)).toBe("000");
    expect(base62(61n, 2)).toBe("0z");
    expect(base62(62n, 2)).toBe("10");
    expect(base62(2n ** 32n - 1n, 6)).toBe("4gfFC3");
  });

  it("makes ids with their prefixes", () => {
    expect(newAgentId()).toMatch(/^agt_[0-9A-Za-z]{22}$/);
    expect(newTokenId()).toMatch(/^tok_[0-9A-Za-z]{22}$/);
  });
});
