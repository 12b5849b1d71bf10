// Baseline server (its own process): a bare grpc-js server whose one unary method does nothing.
import * as grpc from "@grpc/grpc-js";

const server = new grpc.Server();
const id = (b: Buffer) => b;
server.addService(
  { call: { path: "/bench.Noop/Call", requestStream: false, responseStream: false, requestSerialize: id, requestDeserialize: id, responseSerialize: id, responseDeserialize: id } },
  { call: (_call: unknown, cb: grpc.sendUnaryData<Buffer>) => cb(null, Buffer.alloc(0)) },
);
server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, port) => {
  if (err) throw err;
  process.stdout.write(JSON.stringify({ port }) + "\n");
});
