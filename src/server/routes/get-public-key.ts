import type { MessageInitShape } from "@bufbuild/protobuf";
import type { GetPublicKeyRequest, GetPublicKeyResponseSchema } from "../../../gen/agentid/v1/audit_pb.js";
import type { AppContext } from "../context.js";

export function getPublicKeyRoute(ctx: AppContext) {
  return async (_req: GetPublicKeyRequest): Promise<MessageInitShape<typeof GetPublicKeyResponseSchema>> => {
    const s = ctx.audit.signer;
    return { origin: s.name, publicKey: s.publicKey, verifierKey: s.verifierKey };
  };
}
