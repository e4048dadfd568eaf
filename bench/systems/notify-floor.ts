// The floor of W2 (wake latency): the hand-written queue's insert, with the
// payload in its NOTIFY, and a worker that takes the notification itself as
// the job (no claim). Only W2.
import pg from "pg"
import { queueSystem, type QueueAdapter } from "../lib/queue.ts"
import { withClient } from "../lib/pg.ts"
import { workerModule } from "../lib/child.ts"
import { installedVersion } from "../lib/versions.ts"
import type { BenchSystem } from "./types.ts"

const CHANNEL = "bench_floor"

const adapter: QueueAdapter = {
  name: "notify-floor",
  workloads: ["w2"],
  settings: () => ({
    what: "W2 only: the floor of a system that commits an invocation and wakes its worker by NOTIFY",
    insert: `INSERT one row (identity id, jsonb payload) + pg_notify('${CHANNEL}', payload) in one autocommitted statement`,
    worker: "one LISTEN connection; the notification is the job (no claim)",
    driver: `pg ${installedVersion("pg")}`
  }),
  worker: () => ({ module: workerModule("notify-floor") }),
  setup: (dbUrl) =>
    withClient(dbUrl, (c) => c.query("create table bench_floor (id bigint generated always as identity primary key, payload jsonb not null)")).then(() => {}),
  inserter: async () => {
    throw new Error("notify-floor runs W2 only")
  },
  producer: async (dbUrl) => {
    const c = new pg.Client({ connectionString: dbUrl })
    await c.connect()
    return {
      enqueue: async (payload) => {
        await c.query({
          name: "enqueue",
          text: `with j as (insert into bench_floor (payload) values ($1) returning payload) select pg_notify('${CHANNEL}', payload::text) from j`,
          values: [JSON.stringify(payload)]
        })
      },
      close: () => c.end()
    }
  },
  remaining: async () => 0
}

export const notifyFloor: BenchSystem = queueSystem(adapter)
export default notifyFloor
