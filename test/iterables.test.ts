// tap, which the feed's delay metric rides on: a value is passed on once the consumer is done with
// it (asks for the next), so a transport that writes before asking measures the write.
import { describe, expect, it } from "vitest";
import { tap } from "../src/lib/iterables.js";

async function* three() {
  yield 1;
  yield 2;
  yield 3;
}

describe("tap", () => {
  it("passes a value on when the next one is asked for, never one the consumer did not finish, and ends once", async () => {
    const passed: number[] = [];
    const ends: unknown[] = [];
    const it = tap(three(), (v) => passed.push(v), (err) => ends.push(err))[Symbol.asyncIterator]();
    expect((await it.next()).value).toBe(1);
    expect(passed).toEqual([]);
    expect((await it.next()).value).toBe(2);
    expect(passed).toEqual([1]);
    // The consumer stops while holding 2 (a cancelled stream): 2 is not passed on.
    await it.return!();
    expect(passed).toEqual([1]);
    expect(ends).toEqual([undefined]);
  });

  it("passes the last value on when the consumer asks past it, then ends", async () => {
    const passed: number[] = [];
    let ended = 0;
    for await (const _ of tap(three(), (v) => passed.push(v), () => ended++)) void _;
    expect(passed).toEqual([1, 2, 3]);
    expect(ended).toBe(1);
  });
});
