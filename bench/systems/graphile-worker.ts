import { queueSystem, type QueueAdapter } from "../lib/queue.ts"
import { installedVersion } from "../lib/versions.ts"
import { withClient } from "../lib/pg.ts"
import { workerModule } from "../lib/child.ts"
import type { BenchSystem } from "./types.ts"


// Its documented high-throughput configuration (https://worker.graphile.org/docs/performance):
// local queue batching and batched completions.
const WORKER = {
  concurrentJobs: 24,
  maxPoolSize: 26, // "10 or concurrentJobs + 2, whichever is larger"
  localQueueSize: 500,
  completeJobBatchDelay: 0,
  pollInterval: 2000 // default
}

const adapter: QueueAdapter = {
  name: "graphile-worker",
  workloads: ["w1", "w2", "w4", "w5"],
  settings: () => ({
    version: installedVersion("graphile-worker"),
    preset: `worker: { concurrentJobs: ${WORKER.concurrentJobs}, maxPoolSize: ${WORKER.maxPoolSize}, localQueue: { size: ${WORKER.localQueueSize} }, completeJobBatchDelay: ${WORKER.completeJobBatchDelay}, pollInterval: ${WORKER.pollInterval} }`,
    insert: "workerUtils.addJobs(specs) per chunk (one add_jobs() call); single invocation: workerUtils.addJob()",
    pg: installedVersion("pg")
  }),
  worker: () => ({ module: workerModule("graphile-worker"), options: WORKER }),
  setup: async (dbUrl) => {
    const { runMigrations, Logger } = await import("graphile-worker")
    await runMigrations({ connectionString: dbUrl, logger: new Logger(() => () => {}) })
  },
  inserter: async (dbUrl) => {
    const { makeWorkerUtils, Logger } = await import("graphile-worker")
    const utils = await makeWorkerUtils({ connectionString: dbUrl, logger: new Logger(() => () => {}) })
    return {
      insert: async (payloads, runAt) => {
        const run_at = runAt?.toISOString()
        await utils.addJobs(payloads.map((payload) => ({ identifier: "noop", payload, ...(run_at ? { runAt: new Date(run_at) } : {}) })) as any)
      },
      close: async () => await utils.release()
    }
  },
  producer: async (dbUrl) => {
    const { makeWorkerUtils, Logger } = await import("graphile-worker")
    const utils = await makeWorkerUtils({ connectionString: dbUrl, logger: new Logger(() => () => {}) })
    return { enqueue: async (payload) => void (await utils.addJob("noop", payload)), close: async () => await utils.release() }
  },
  remaining: async (c) =>
    Number(
      (await c.query(`select count(*)::int as n from graphile_worker._private_jobs j
        join graphile_worker._private_tasks t on t.id = j.task_id
        where t.identifier = 'noop' and j.run_at <= now()`)).rows[0].n
    )
}

export const graphileWorker: BenchSystem = queueSystem(adapter)
export default graphileWorker
