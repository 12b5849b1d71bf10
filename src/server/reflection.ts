import type * as grpc from "@grpc/grpc-js";
import { toBinary, type DescFile, type DescService } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { ReflectionService } from "@grpc/reflection";
import { loadSync } from "@grpc/proto-loader";
import { protoPath as healthProtoPath } from "grpc-health-check";

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
  const fileDescriptorProtos = withDependencies(services.map((s) => s.file)).map((f) =>
    Buffer.from(toBinary(FileDescriptorProtoSchema, f.proto)),
  );
  // grpc.health.v1 too, so `buf curl` can call Health/Check without a schema.
  const definition = { ...loadSync(healthProtoPath), "agentid.mounted": { fileDescriptorProtos } };
  new ReflectionService(definition as never).addToServer(server);
}
