// Baseline (its own process): a bare node:http2 server that answers every stream with gRPC-style
// headers and one bookmark frame, then keeps it open; `broadcast` writes one pre-encoded frame (a
// batch of one revocation event, the same shape agentid sends) to every open stream.
import http2 from "node:http2";
import { create, toBinary } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { WatchRevocationsResponseSchema } from "../../gen/agentid/v1/revocation_pb.js";
import { serve, wall } from "../lib/ctl.js";

const frame = (body: Uint8Array) => {
  const f = Buffer.allocUnsafe(body.length + 5);
  f.writeUInt8(0, 0);
  f.writeUInt32BE(body.length, 1);
  Buffer.from(body).copy(f, 5);
  return f;
};
const open = new Set<http2.ServerHttp2Stream>();
const server = http2.createServer({ settings: { maxConcurrentStreams: 1_000_000 } });
const hello = frame(toBinary(WatchRevocationsResponseSchema, create(WatchRevocationsResponseSchema, { progress: { revision: 0n } })));
server.on("stream", (stream) => {
  stream.respond({ ":status": 200, "content-type": "application/grpc" });
  stream.write(hello);
  open.add(stream);
  stream.on("close", () => open.delete(stream));
  stream.on("error", () => {});
  stream.resume();
});
await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));

serve((cmd) => {
  if (cmd.cmd === "broadcast") {
    const rev = BigInt(cmd.rev);
    const bytes = frame(
      toBinary(
        WatchRevocationsResponseSchema,
        create(WatchRevocationsResponseSchema, {
          events: [
            {
              revision: rev,
              target: { case: "tokenId", value: "tok_" + "x".repeat(26) },
              tokenAgentId: "agt_" + "y".repeat(26),
              reason: "bench",
              revokedBy: "key_" + "z".repeat(26),
              revokedAt: timestampFromDate(new Date()),
              expiresAt: timestampFromDate(new Date(Date.now() + 3_600_000)),
            },
          ],
        }),
      ),
    );
    const t0 = wall();
    for (const s of open) s.write(bytes);
    return { t0, t1: wall(), streams: open.size };
  }
  throw new Error(`unknown command ${cmd.cmd}`);
});
process.stdout.write(JSON.stringify({ pid: process.pid, port: (server.address() as { port: number }).port }) + "\n");
