// W3 "plain SQL" reference: the same checkpoints a durable-step engine writes, as plain
// autocommitted statements: one INSERT for the workflow, one INSERT per step (its
// result), one UPDATE when the workflow finishes; `inFlight` connections, one
// workflow at a time per connection.
import pg from "pg"
import type { WorkerFactory } from "../lib/worker-host.ts"

const factory: WorkerFactory = async ({ dbUrl, options }) => {
  const { workflows, steps, inFlight, warmup } = options as { workflows: number; steps: number; inFlight: number; warmup: number }
  const clients = await Promise.all(
    Array.from({ length: inFlight }, async () => {
      const c = new pg.Client({ connectionString: dbUrl })
      await c.connect()
      return c
    })
  )
  /** Runs workflows with ids from `first`, `count` of them, `inFlight` at a time. */
  const runAll = async (first: number, count: number) => {
    let next = first
    await Promise.all(
      clients.map(async (c) => {
        while (next < first + count) {
          const wf = next++
          await c.query({ name: "wf", text: "insert into bench_workflows (id, status) values ($1, 'running')", values: [wf] })
          for (let s = 0; s < steps; s++) {
            // the "step" is a no-op; its result is committed before the workflow continues
            const output = JSON.stringify({ step: s })
            await c.query({
              name: "step",
              text: "insert into bench_steps (workflow_id, step, output) values ($1, $2, $3)",
              values: [wf, s, output]
            })
          }
          await c.query({ name: "done", text: "update bench_workflows set status = 'done' where id = $1", values: [wf] })
        }
      })
    )
  }
  await runAll(1_000_000, warmup) // untimed, ids apart from the timed ones
  return {
    start: async () => {
      await runAll(0, workflows)
      return { workflows, steps: workflows * steps }
    },
    stop: async () => {
      await Promise.all(clients.map((c) => c.end()))
    }
  }
}
export default factory
