import { describe, expect, it } from "vitest";
import { Dispatcher } from "../src/feed/dispatcher.js";

/** One turn of the event loop: the dispatcher runs one slice per turn. */
const turn = () => new Promise((r) => setImmediate(r));

describe("the dispatcher", () => {
  it("flushes every scheduled stream once, in order, 256 a turn, including those scheduled while it runs", async () => {
    const d = new Dispatcher();
    const flushed: number[] = [];
    const perTurn: number[] = [];
    let thisTurn = 0;
    const stream = (id: number) => ({ flush: () => (flushed.push(id), thisTurn++, 10) });
    for (let i = 0; i < 1000; i++) d.schedule(stream(i));
    const late = 1000;
    for (let t = 0; t < 20 && flushed.length < 1000 + late; t++) {
      await turn();
      perTurn.push(thisTurn);
      thisTurn = 0;
      // Streams whose writes completed ask again between slices.
      if (t < 4) for (let i = 0; i < late / 4; i++) d.schedule(stream(1000 + t * (late / 4) + i));
    }
    expect(flushed).toEqual(Array.from({ length: 1000 + late }, (_, i) => i));
    expect(Math.max(...perTurn)).toBe(256);
  });

  it("ends a slice at 1 MiB even before 256 streams, and at 16 streams or 16 KiB while subscribers wait to catch up", async () => {
    const slices = async (crowded: boolean, bytes: number) => {
      const d = new Dispatcher(() => crowded);
      let flushed = 0;
      for (let i = 0; i < 100; i++) d.schedule({ flush: () => (flushed++, bytes) });
      await turn();
      return flushed;
    };
    expect(await slices(false, 256 * 1024)).toBe(4);
    expect(await slices(true, 1)).toBe(16);
    expect(await slices(true, 4 * 1024)).toBe(4);
  });
});
