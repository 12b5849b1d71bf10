// Revoker (its own process): revokes every token given, `inFlight` Revokes at a time over raw
// grpc-js with pre-encoded requests, alternating between the replicas given; records each call's
// revision, when it was sent and when it was acknowledged (wall clock, ms, as the watchers' clock).
import { readFileSync } from "node:fs";
import * as grpc from "@grpc/grpc-js";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { RevokeRequestSchema, RevokeResponseSchema } from "../../gen/agentid/v1/token_pb.js";
import { wall } from "../lib/ctl.js";

const opts = JSON.parse(readFileSync(process.argv[2]!, "utf8")) as {
  addresses: string[];
  tokenIds: string[];
  inFlight: number;
  authorization: string;
};
const clients = opts.addresses.map((a) => new grpc.Client(a, grpc.credentials.createInsecure()));
const md = new grpc.Metadata();
md.set("authorization", opts.authorization);
const bodies = opts.tokenIds.map((id) =>
  Buffer.from(toBinary(RevokeRequestSchema, create(RevokeRequestSchema, { target: { case: "tokenId", value: id }, reason: "load" }))),
);
const id = (b: Buffer) => b;
const revision: number[] = [];
const sent: number[] = [];
const acked: number[] = [];
let errors = 0;
let firstError = "";
let next = 0;
const t0 = wall();
await Promise.all(
  Array.from({ length: opts.inFlight }, async () => {
    for (let i = next++; i < bodies.length; i = next++) {
      const at = wall();
      const res = await new Promise<Buffer | undefined>((resolve) =>
        clients[i % clients.length]!.makeUnaryRequest("/agentid.v1.TokenService/Revoke", id, id, bodies[i]!, md, (err, r) => {
          if (err) {
            errors++;
            firstError ||= err.message;
          }
          resolve(r);
        }),
      );
      if (!res) continue;
      revision.push(Number(fromBinary(RevokeResponseSchema, res).revision));
      sent.push(at);
      acked.push(wall());
    }
  }),
);
const seconds = (wall() - t0) / 1000;
for (const c of clients) c.close();
// A large line to a pipe is written asynchronously: exit once it is out.
process.stdout.write(JSON.stringify({ revision, sent, acked, errors, firstError, seconds }) + "\n", () => process.exit(0));
