// Hand-written SQL queue worker: 8 connections, each claiming up to 100 due rows with
// FOR UPDATE SKIP LOCKED and deleting them in the same statement; LISTEN for wake-ups
// with a 500 ms poll as safety net.
import pg from "pg"
import type { WorkerFactory } from "../lib/worker-host.ts"

export const CLAIM = `
  delete from bench_jobs where id in (
    select id from bench_jobs
     where run_at <= now() and not failed
     order by run_at, id
     limit $1
     for update skip locked)
  returning id, payload`

const factory: WorkerFactory = async ({ dbUrl, options, onJob }) => {
  const connections: number = options.connections ?? 8
  const batch: number = options.batch ?? 100
  const clients = await Promise.all(
    Array.from({ length: connections }, async () => {
      const c = new pg.Client({ connectionString: dbUrl })
      await c.connect()
      // Prepare it without taking anything: the jobs are already queued when
      // the worker reports ready, and only "go" may start consuming them.
      await c.query({ name: "claim", text: CLAIM, values: [0] })
      return c
    })
  )
  const listener = new pg.Client({ connectionString: dbUrl })
  await listener.connect()
  let stopping = false
  // Each claim deletes its rows: they are complete once its statement returns.
  let committed = 0
  const idle: Array<() => void> = []
  const wakeOne = () => idle.shift()?.()
  const wakeAll = () => {
    while (idle.length) idle.shift()!()
  }
  listener.on("notification", wakeOne)
  const loop = async (c: pg.Client) => {
    while (!stopping) {
      const r = await c.query({ name: "claim", text: CLAIM, values: [batch] })
      committed += r.rows.length
      for (const row of r.rows) onJob(row.payload) // the no-op handler
      if (r.rows.length === 0) {
        await new Promise<void>((res) => {
          const timer = setTimeout(() => {
            const i = idle.indexOf(wake)
            if (i >= 0) idle.splice(i, 1)
            res()
          }, 500)
          const wake = () => {
            clearTimeout(timer)
            res()
          }
          idle.push(wake)
        })
      }
    }
  }
  let loops: Promise<void>[] = []
  return {
    start: async () => {
      await listener.query("listen bench_jobs")
      loops = clients.map(loop)
    },
    committed: async () => committed,
    stop: async () => {
      stopping = true
      wakeAll()
      await Promise.all(loops)
      await Promise.all([...clients, listener].map((c) => c.end()))
    }
  }
}
export default factory
