import type { MessageInitShape } from "@bufbuild/protobuf";
import type { GetInclusionProofRequest, GetInclusionProofResponseSchema } from "../../../gen/agentid/v1/audit_pb.js";
import { inclusionProof } from "../../domain/audit.js";
import type { AppContext } from "../context.js";

export function getInclusionProofRoute(ctx: AppContext) {
  return async (req: GetInclusionProofRequest): Promise<MessageInitShape<typeof GetInclusionProofResponseSchema>> => {
    return inclusionProof(ctx.audit, req.leafIndex, req.treeSize);
  };
}
