import { queueSystem, type QueueAdapter } from "../lib/queue.ts"
import { installedVersion } from "../lib/versions.ts"
import { workerModule } from "../lib/child.ts"
import type { BenchSystem } from "./types.ts"

const QUEUE = "bench"
const BATCH = Number(process.env.BENCH_PGBOSS_BATCH ?? 100)
const LOCAL_CONCURRENCY = Number(process.env.BENCH_PGBOSS_LOCAL_CONCURRENCY ?? 4)

// pg-boss's throughput knobs: fetch `batchSize` jobs per query (handler gets the array),
// keep fetching while batches come back full (burstWhenBatchFull), and wake on
// LISTEN/NOTIFY (useListenNotify + queue notify) instead of the 2 s poll.
const CONSTRUCTOR = { useListenNotify: true, max: 10 }
const WORK = { batchSize: BATCH, localConcurrency: LOCAL_CONCURRENCY, burstWhenBatchFull: true, pollingIntervalSeconds: 2 }

const newBoss = async (dbUrl: string) => {
  const { PgBoss } = await import("pg-boss")
  const boss = new PgBoss({ connectionString: dbUrl, ...CONSTRUCTOR, supervise: false, schedule: false })
  boss.on("error", (e) => console.error("pg-boss:", e))
  await boss.start()
  return boss
}

const adapter: QueueAdapter = {
  name: "pg-boss",
  workloads: ["w1", "w2", "w4", "w5"],
  settings: () => ({
    version: installedVersion("pg-boss"),
    constructor: CONSTRUCTOR,
    queue: `createQueue("${QUEUE}", { notify: true })`,
    work: WORK,
    handler: "batch handler (receives the fetched array), completes the batch in one call",
    insert: "boss.insert(queue, jobs) per chunk; single invocation: boss.send()",
    pg: installedVersion("pg")
  }),
  worker: () => ({ module: workerModule("pg-boss"), options: { queue: QUEUE, constructor: CONSTRUCTOR, work: WORK } }),
  setup: async (dbUrl) => {
    const boss = await newBoss(dbUrl)
    await boss.createQueue(QUEUE, { notify: true } as any)
    await boss.stop({ graceful: false } as any)
  },
  inserter: async (dbUrl) => {
    const boss = await newBoss(dbUrl)
    return {
      insert: async (payloads, runAt) => {
        await boss.insert(QUEUE, payloads.map((data) => ({ data, ...(runAt ? { startAfter: runAt } : {}) })))
      },
      close: () => boss.stop({ graceful: false } as any)
    }
  },
  producer: async (dbUrl) => {
    const boss = await newBoss(dbUrl)
    return {
      enqueue: async (payload) => void (await boss.send(QUEUE, payload)),
      close: () => boss.stop({ graceful: false } as any)
    }
  },
  remaining: async (c) =>
    Number(
      (await c.query(`select count(*)::int as n from pgboss.job
         where name = $1 and state < 'completed' and start_after <= now()`, [QUEUE])).rows[0].n
    )
}

export const pgBoss: BenchSystem = queueSystem(adapter)
export default pgBoss
