// The CLI's client side: transports, typed clients and the feed follower. Loaded only by commands
// that talk to a server, so help, --version and offline commands start without Connect.
import { Code, createClient, ConnectError } from "@connectrpc/connect";
import { createTransport } from "../client/transport.js";
import { FeedFollower } from "../client/feed.js";
import { KeyService } from "../../gen/agentid/v1/key_pb.js";
import { PolicyService } from "../../gen/agentid/v1/policy_pb.js";
import { ActivityService } from "../../gen/agentid/v1/activity_pb.js";
import { AgentService } from "../../gen/agentid/v1/agent_pb.js";
import { TokenService } from "../../gen/agentid/v1/token_pb.js";
import { RevocationService, type RevocationEvent } from "../../gen/agentid/v1/revocation_pb.js";
import { AuditService } from "../../gen/agentid/v1/audit_pb.js";
import { DEFAULT_URL } from "./about.js";
import { shown } from "./terminal.js";

export type Common = { url?: string; "api-key"?: string };
type Fail = (message: string) => never;

/** The server's HTTP URL, checked: a missing scheme would otherwise surface as a cryptic error. */
export function serverUrl(values: Common, fail: Fail): string {
  const raw = values.url || process.env.AGENTID_URL || DEFAULT_URL;
  const from = values.url ? "--url" : process.env.AGENTID_URL ? "AGENTID_URL" : "the default URL";
  let u: URL | undefined;
  try {
    u = new URL(raw);
  } catch {
    // Not a URL at all, e.g. "127.0.0.1:8080".
  }
  if (!u || (u.protocol !== "http:" && u.protocol !== "https:")) {
    fail(`${from} ${JSON.stringify(raw)} needs a scheme: use http://host:port (agentid's HTTP port), e.g. ${DEFAULT_URL}`);
  }
  return raw;
}

export function clients(values: Common, fail: Fail, anonymous = false) {
  const key = anonymous ? undefined : values["api-key"] || process.env.AGENTID_API_KEY;
  // The SDK's transport: Connect over HTTP/1.1 to the HTTP port, with the key as a bearer credential.
  const transport = createTransport(serverUrl(values, fail), { protocol: "connect", apiKey: key });
  return {
    agents: createClient(AgentService, transport),
    tokens: createClient(TokenService, transport),
    revocations: createClient(RevocationService, transport),
    keys: createClient(KeyService, transport),
    policies: createClient(PolicyService, transport),
    activity: createClient(ActivityService, transport),
    audit: createClient(AuditService, transport),
  };
}

/** Errors no reconnect can fix: watch stops on them instead of retrying forever. */
const FATAL_WATCH = new Set([Code.Unauthenticated, Code.PermissionDenied, Code.InvalidArgument, Code.Unimplemented]);

export async function watch(values: Common & { after?: string }, fail: Fail, printEvent: (e: RevocationEvent) => void): Promise<void> {
  const after = values.after ?? "0";
  if (!/^\d+$/.test(after)) fail(`--after: expected a revision number`);
  const url = serverUrl(values, fail);
  let fatal: ConnectError | undefined;
  let done!: () => void;
  const finished = new Promise<void>((r) => (done = r));
  // The SDK's follower: reconnects with backoff and resumes after the last revision printed.
  const follower: FeedFollower = new FeedFollower({
    endpoints: [url],
    protocol: "connect",
    apiKey: values["api-key"] || process.env.AGENTID_API_KEY,
    afterRevision: BigInt(after),
    onEvent: printEvent,
    onReset() {
      process.stderr.write("agentid watch: the resume point was compacted away; replaying every retained revocation\n");
    },
    onError(err) {
      if (FATAL_WATCH.has(err.code)) {
        fatal = err;
        done();
        return;
      }
      process.stderr.write(`agentid watch: ${Code[err.code]}: ${shown(err.rawMessage)}; reconnecting, resuming after revision ${follower.revision}\n`);
    },
  });
  follower.start();
  process.once("SIGINT", done);
  process.once("SIGTERM", done);
  await finished;
  await follower.close();
  if (fatal) throw fatal;
}

/** The hint for an error that says nothing useful by itself. */
function hint(err: ConnectError): string {
  if (/socket hang up|HPE_|Parse Error|other side closed|protocol error|unexpected end|malformed response/i.test(err.rawMessage)) {
    return ` (the server at ${process.env.AGENTID_URL || "--url"} did not answer HTTP/1.1: is it the gRPC port? The CLI talks to agentid's HTTP port, AGENTID_HTTP_PORT, default 8080)`;
  }
  if (err.code === Code.Unavailable) return " (is the server running?)";
  return "";
}

/**
 * A failed call as one line: the code, a hint where the message alone would puzzle, the message.
 * A connection lost mid-call is said as such: no server error happened that the CLI knows of.
 */
export function describeError(err: unknown): string | undefined {
  if (!(err instanceof ConnectError)) return undefined;
  if (/\b(EPIPE|ECONNRESET)\b/.test(err.rawMessage)) {
    return `connection lost: the server at ${process.env.AGENTID_URL || "--url"} closed the connection before answering (${err.rawMessage}); the call may or may not have taken effect: check, then retry`;
  }
  return `${Code[err.code]}${hint(err)}: ${err.rawMessage}`;
}
