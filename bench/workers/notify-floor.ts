// The floor of W2: a raw LISTEN/NOTIFY consumer. The producer's insert carries
// its payload in the NOTIFY; the "handler" starts when the notification arrives,
// with no claim. Any system that commits an invocation and wakes its worker by
// NOTIFY waits at least this long.
import pg from "pg"
import type { WorkerFactory } from "../lib/worker-host.ts"

export const CHANNEL = "bench_floor"

const factory: WorkerFactory = async ({ dbUrl, onJob }) => {
  const listener = new pg.Client({ connectionString: dbUrl })
  await listener.connect()
  let handled = 0
  listener.on("notification", (m) => {
    handled++
    onJob(JSON.parse(m.payload ?? "{}"))
  })
  return {
    start: async () => {
      await listener.query(`listen ${CHANNEL}`)
    },
    committed: async () => handled,
    stop: () => listener.end()
  }
}
export default factory
