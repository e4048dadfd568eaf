// graphile-worker in one process: a pre-warmed pg.Pool, its documented best-throughput
// batching (localQueue, completeJobBatchDelay) and a no-op task.
import pg from "pg"
import type { WorkerFactory } from "../lib/worker-host.ts"

const factory: WorkerFactory = async ({ dbUrl, options, onJob }) => {
  const { run, Logger } = await import("graphile-worker")
  const pool = new pg.Pool({ connectionString: dbUrl, max: options.maxPoolSize })
  pool.on("error", (e) => console.error("graphile-worker pool:", e.message))
  pool.on("connect", (client) => client.on("error", (e) => console.error("graphile-worker client:", e.message)))
  // open the pool's connections now so the timed part does not pay for them
  const cs = await Promise.all(Array.from({ length: options.maxPoolSize }, () => pool.connect()))
  for (const c of cs) c.release()
  const quiet = new Logger(() => () => {})
  let runner: Awaited<ReturnType<typeof run>> | undefined
  return {
    start: async () => {
      runner = await run({
        pgPool: pool,
        logger: quiet,
        noHandleSignals: true,
        taskList: {
          noop: async (payload) => {
            onJob(payload)
          }
        },
        preset: {
          worker: {
            concurrentJobs: options.concurrentJobs,
            maxPoolSize: options.maxPoolSize,
            pollInterval: options.pollInterval,
            localQueue: { size: options.localQueueSize },
            completeJobBatchDelay: options.completeJobBatchDelay
          }
        }
      })
    },
    stop: async () => {
      await runner?.stop()
      await pool.end()
    }
  }
}
export default factory
