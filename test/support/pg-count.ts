// A TCP proxy in front of PostgreSQL that counts the statements clients send through it: every
// simple Query ('Q') and every extended-protocol Execute ('E'), with the text each ran (from 'Q'
// or the preceding Parse 'P'), so a test can say who issued what.
import net from "node:net";

export interface StatementCounter {
  /** A postgres:// URL like `target`, through the proxy. */
  url: string;
  /** Statement texts in the order they were sent. */
  statements: string[];
  close(): Promise<void>;
}

export async function countStatements(targetUrl: string): Promise<StatementCounter> {
  const target = new URL(targetUrl);
  const statements: string[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(target.port), target.hostname);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on("close", () => sockets.delete(s));
      s.on("error", () => {});
    }
    let buf = Buffer.alloc(0);
    let started = false;
    let lastParsed = "";
    client.on("data", (d: Buffer) => {
      upstream.write(d);
      buf = Buffer.concat([buf, d]);
      for (;;) {
        if (!started) {
          // The startup message (and an SSL request before it) has no type byte.
          if (buf.length < 8) return;
          const len = buf.readInt32BE(0);
          if (buf.length < len) return;
          const code = buf.readInt32BE(4);
          buf = buf.subarray(len);
          if (code !== 80877103) started = true;
          continue;
        }
        if (buf.length < 5) return;
        const type = String.fromCharCode(buf[0]!);
        const len = buf.readInt32BE(1);
        if (buf.length < 1 + len) return;
        const body = buf.subarray(5, 1 + len);
        if (type === "Q") statements.push(body.subarray(0, body.indexOf(0)).toString());
        else if (type === "P") {
          const nameEnd = body.indexOf(0);
          lastParsed = body.subarray(nameEnd + 1, body.indexOf(0, nameEnd + 1)).toString();
        } else if (type === "E") statements.push(lastParsed);
        buf = buf.subarray(1 + len);
      }
    });
    upstream.on("data", (d) => client.write(d));
    client.on("close", () => upstream.destroy());
    upstream.on("close", () => client.destroy());
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const url = new URL(targetUrl);
  url.hostname = "127.0.0.1";
  url.port = String((server.address() as net.AddressInfo).port);
  return {
    url: url.toString(),
    statements,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}
