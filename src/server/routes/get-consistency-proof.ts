import type { MessageInitShape } from "@bufbuild/protobuf";
import type { GetConsistencyProofRequest, GetConsistencyProofResponseSchema } from "../../../gen/agentid/v1/audit_pb.js";
import { consistencyProof } from "../../domain/audit.js";
import type { AppContext } from "../context.js";

export function getConsistencyProofRoute(ctx: AppContext) {
  return async (req: GetConsistencyProofRequest): Promise<MessageInitShape<typeof GetConsistencyProofResponseSchema>> => {
    return consistencyProof(ctx.audit, req.firstTreeSize, req.secondTreeSize);
  };
}
