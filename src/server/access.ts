import type { DescMethod } from "@bufbuild/protobuf";
import type { Role } from "../store/database.js";
import { DomainError } from "../domain/errors.js";
import { actorOf, type Authenticator, type Caller } from "./auth.js";
import type { Admitted, CallContext } from "./call.js";
import type { Handler } from "./services.js";
import { validateRequest } from "./validate-message.js";
import { lazily } from "../lib/iterables.js";

/** Which roles may call a method; `anonymous` admits calls without credentials (the route then demands other proof). */
export interface Access {
  roles: readonly Role[];
  anonymous?: boolean;
  /**
   * Admitted calls wait for this before the transport goes on (reads the body, starts the
   * handler): the feed's turn of the event loop, so that thousands of subscriptions arriving at
   * once are set up in slices between other requests rather than in one run.
   */
  paced?: () => Promise<void>;
}

class AuthedCall implements CallContext {
  constructor(
    private readonly base: CallContext,
    readonly caller: Caller | undefined,
  ) {}

  header(name: string): string | undefined {
    return this.base.header(name);
  }

  onCancel(listener: () => void): () => void {
    return this.base.onCancel(listener);
  }

  get peer(): string {
    return this.base.peer;
  }

  get principal(): string {
    return actorOf(this.caller);
  }
}

function check(caller: Caller | undefined, method: DescMethod, access: Access): void {
  if (!caller) {
    if (access.anonymous) return;
    throw new DomainError("unauthenticated", "missing credentials: send \"authorization: Bearer <api key>\"");
  }
  if (caller.kind === "key" && !access.roles.includes(caller.role)) {
    throw new DomainError(
      "permission_denied",
      `role ${caller.role} may not call ${method.parent.name}.${method.name} (allowed: ${access.roles.join(", ")})`,
    );
  }
}

async function authorize(auth: Authenticator, method: DescMethod, access: Access, call: CallContext): Promise<CallContext> {
  const caller = call.admitted ? call.admitted.caller : await auth.authenticate(call.header("authorization"), call.peer);
  check(caller, method, access);
  return new AuthedCall(call, caller);
}

/** The check a transport makes from the headers alone, before it reads the request body. */
export type Admit = (header: (name: string) => string | undefined, peer: string) => Promise<Admitted>;

/**
 * Admission from headers: credentials and role are checked before a byte of the body is read, so
 * a caller with no key or a bad one costs its headers. Failures count against the peer's address
 * (see Authenticator); anonymous calls (Issue with an agent's proof, which costs a signature
 * check) take from a per-address allowance of their own. The transport hands the caller it admitted
 * to the handler's guard (CallContext.admitted), which then checks the role without authenticating
 * again.
 */
export function admission(method: DescMethod, access: Access, auth: Authenticator): Admit {
  return async (header, peer) => {
    const caller = await auth.authenticate(header("authorization"), peer);
    check(caller, method, access);
    if (!caller) auth.admitAnonymous(peer, method.name);
    if (access.paced) await access.paced();
    return { caller };
  };
}

/**
 * Wraps a handler so that it runs only for a caller the access rule admits, and only on a request
 * every field of which can be stored and timed (validate-message.ts): checked after the caller,
 * so that anonymous requests cost no more than their credentials.
 */
export function guard(method: DescMethod, h: Handler, access: Access, auth: Authenticator): Handler {
  const admit = async (req: never, call: CallContext) => {
    const authed = await authorize(auth, method, access, call);
    validateRequest(method.input, req);
    return authed;
  };
  if (method.methodKind === "server_streaming") {
    return (req: never, call: CallContext) => lazily(async () => h(req, await admit(req, call)) as AsyncIterable<unknown>);
  }
  return async (req: never, call: CallContext) => h(req, await admit(req, call));
}
