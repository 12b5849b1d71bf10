import type * as grpc from "@grpc/grpc-js";
import { toBinary, type DescFile } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { ReflectionService } from "@grpc/reflection";
import { loadSync } from "@grpc/proto-loader";
import { protoPath as healthProtoPath } from "grpc-health-check";
import { file_agentid_v1_agent } from "../../gen/agentid/v1/agent_pb.js";
import { file_agentid_v1_token } from "../../gen/agentid/v1/token_pb.js";
import { file_agentid_v1_revocation } from "../../gen/agentid/v1/revocation_pb.js";
import { file_agentid_v1_audit } from "../../gen/agentid/v1/audit_pb.js";

function withDependencies(files: DescFile[], seen = new Map<string, DescFile>()): DescFile[] {
  for (const f of files) {
    if (seen.has(f.name)) continue;
    seen.set(f.name, f);
    withDependencies(f.dependencies, seen);
  }
  return [...seen.values()];
}

/**
 * Server reflection from the generated descriptors, so grpcurl and `buf curl` work without the
 * .proto files. @grpc/reflection reads only `fileDescriptorProtos` from the package definition.
 */
export function addReflection(server: grpc.Server): void {
  const fileDescriptorProtos = withDependencies([
    file_agentid_v1_agent,
    file_agentid_v1_token,
    file_agentid_v1_revocation,
    file_agentid_v1_audit,
  ]).map(
    (f) => Buffer.from(toBinary(FileDescriptorProtoSchema, f.proto)),
  );
  // grpc.health.v1 too, so `buf curl` can call Health/Check without a schema.
  const definition = { ...loadSync(healthProtoPath), "agentid.v1": { fileDescriptorProtos } };
  new ReflectionService(definition as never).addToServer(server);
}
