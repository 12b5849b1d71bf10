import type { DescMethod } from "@bufbuild/protobuf";
import type { Role } from "../store/database.js";
import { DomainError } from "../domain/errors.js";
import { actorOf, type Authenticator, type Caller } from "./auth.js";
import type { CallContext } from "./call.js";
import type { Handler } from "./services.js";
import { validateRequest } from "./validate-message.js";

/** Which roles may call a method; `anonymous` admits calls without credentials (the route then demands other proof). */
export interface Access {
  roles: readonly Role[];
  anonymous?: boolean;
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

async function authorize(auth: Authenticator, method: DescMethod, access: Access, call: CallContext): Promise<CallContext> {
  const caller = await auth.authenticate(call.header("authorization"));
  if (!caller) {
    if (access.anonymous) return new AuthedCall(call, undefined);
    throw new DomainError("unauthenticated", "missing credentials: send \"authorization: Bearer <api key>\"");
  }
  if (caller.kind === "key" && !access.roles.includes(caller.role)) {
    throw new DomainError(
      "permission_denied",
      `role ${caller.role} may not call ${method.parent.name}.${method.name} (allowed: ${access.roles.join(", ")})`,
    );
  }
  return new AuthedCall(call, caller);
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
    return async function* (req: never, call: CallContext) {
      yield* h(req, await admit(req, call)) as AsyncIterable<unknown>;
    };
  }
  return async (req: never, call: CallContext) => h(req, await admit(req, call));
}
