import type { Migration, MigrationProvider } from "kysely";
import * as m0001 from "./0001-init.js";
import * as m0002 from "./0002-feed.js";
import * as m0003 from "./0003-audit.js";
import * as m0004 from "./0004-auth.js";
import * as m0005 from "./0005-sequenced-logs.js";
import * as m0010 from "./0010-audit-tree.js";
import * as m0015 from "./0015-usage.js";
import * as m0020 from "./0020-agent-audiences.js";
import * as m0025 from "./0025-entry-salt.js";
import * as m0030 from "./0030-usage-logged.js";
import * as m0035 from "./0035-usage-operation.js";
import * as m0040 from "./0040-numbered-rows.js";

// A static index: migrations are known at build time, never discovered from the file system.
const migrations: Record<string, Migration> = {
  "0001-init": m0001,
  "0002-feed": m0002,
  "0003-audit": m0003,
  "0004-auth": m0004,
  "0005-sequenced-logs": m0005,
  "0010-audit-tree": m0010,
  "0015-usage": m0015,
  "0020-agent-audiences": m0020,
  "0025-entry-salt": m0025,
  "0030-usage-logged": m0030,
  "0035-usage-operation": m0035,
  "0040-numbered-rows": m0040,
};

export const migrationProvider: MigrationProvider = {
  getMigrations: async () => migrations,
};
