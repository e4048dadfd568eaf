// pg-boss in one process: started (connections open, LISTEN set up) before "go";
// boss.work() with batches of `batchSize` on "go".
import type { WorkerFactory } from "../lib/worker-host.ts"

const factory: WorkerFactory = async ({ dbUrl, options, onJob }) => {
  const { PgBoss } = await import("pg-boss")
  const boss = new PgBoss({ connectionString: dbUrl, ...options.constructor })
  boss.on("error", (e) => console.error("pg-boss:", e))
  await boss.start()
  return {
    start: async () => {
      await boss.work(options.queue, options.work, async (jobs: Array<{ data: unknown }>) => {
        for (const j of jobs) onJob(j.data)
      })
    },
    stop: async () => {
      await boss.stop({ graceful: true, wait: true, timeout: 10_000 } as any)
    }
  }
}
export default factory
