// Load generator (its own process): raw grpc-js unary calls with pre-encoded request bytes, so the
// client spends as little CPU as possible per call.
import { readFileSync } from "node:fs";
import * as grpc from "@grpc/grpc-js";
import { closedLoop } from "./stats.js";

const opts = JSON.parse(readFileSync(process.argv[2]!, "utf8")) as {
  address: string;
  path: string;
  requests: string[]; // base64 protobuf
  concurrency: number;
  channels: number;
  warmupMs: number;
  durationMs: number;
  authorization?: string;
};
const requests = opts.requests.map((b) => Buffer.from(b, "base64"));
const clients = Array.from(
  { length: opts.channels },
  (_, i) => new grpc.Client(opts.address, grpc.credentials.createInsecure(), { "grpc.channel_id": i } as grpc.ChannelOptions),
);
const md = new grpc.Metadata();
if (opts.authorization) md.set("authorization", opts.authorization);
const id = (b: Buffer) => b;

const summary = await closedLoop(opts.concurrency, opts.warmupMs, opts.durationMs, (i) => {
  const client = clients[i % clients.length]!;
  return new Promise<void>((resolve, reject) =>
    client.makeUnaryRequest(opts.path, id, id, requests[i % requests.length]!, md, (err) => (err ? reject(err) : resolve())),
  );
});
for (const c of clients) c.close();
process.stdout.write(JSON.stringify(summary) + "\n");
process.exit(0);
