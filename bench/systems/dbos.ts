import { runSteps } from "../lib/steps.ts"
import { installedVersion } from "../lib/versions.ts"
import { workerModule } from "../lib/child.ts"
import type { BenchSystem } from "./types.ts"

// DBOS defaults apart from quiet logs; its system database is the run's fresh database.
const CONFIG = { logLevel: "error" }

export const dbos: BenchSystem = {
  name: "dbos",
  implemented: true,
  settings: () => ({
    version: installedVersion("@dbos-inc/dbos-sdk"),
    config: { name: "bench", systemDatabaseUrl: "<fresh database>", ...CONFIG },
    workflow: "DBOS.registerWorkflow(async (id) => { 10 x await DBOS.runStep(async () => s, { name }) }); workflows called directly, 24 in flight"
  }),
  w3: (ctx, p) => runSteps(ctx, p, {
      module: workerModule("dbos"),
      options: { config: CONFIG },
      execArgv: ["--no-deprecation"] // DBOS 5.3 trips pg 8's "client.query() while busy" deprecation
    })
}
export default dbos
