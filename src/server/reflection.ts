import type * as grpc from "@grpc/grpc-js";
import { toBinary, type DescFile, type DescService } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { ReflectionService } from "@grpc/reflection";
import { Health } from "../../gen/grpc/health/v1/health_pb.js";

function withDependencies(files: DescFile[], seen = new Map<string, DescFile>()): DescFile[] {
  for (const f of files) {
    if (seen.has(f.name)) continue;
    seen.set(f.name, f);
    withDependencies(f.dependencies, seen);
  }
  return [...seen.values()];
}

/**
 * Server reflection from the generated descriptors of exactly the services the server mounts (the
 * caller passes the same list it gives addGrpcServices), so grpcurl and `buf curl` can call every
 * one without the .proto files. @grpc/reflection reads only `fileDescriptorProtos` from the
 * package definition.
 */
export function addReflection(server: grpc.Server, services: readonly DescService[]): void {
  // grpc.health.v1 (served by grpc-health-check) from our own generated copy of its proto: the
  // descriptors proto-loader builds were listed but could not be resolved by `buf curl`.
  const fileDescriptorProtos = withDependencies([...services, Health].map((s) => s.file)).map((f) =>
    Buffer.from(toBinary(FileDescriptorProtoSchema, f.proto)),
  );
  new ReflectionService({ mounted: { fileDescriptorProtos } } as never).addToServer(server);
}
