// effect-conductor: W1/W2/W4/W5 through the shared queue harness, W3 through the
// shared steps harness. Invocations go through the public client API
// (invokeMany for bulk inserts, invoke for single ones); workers are the
// library's Worker layer in child processes.
import { queueSystem, type QueueAdapter } from "../lib/queue.ts"
import { runSteps } from "../lib/steps.ts"
import { clientRuntime, defaultHistory, type History, Noop } from "../lib/conductor.ts"
import { workerModule } from "../lib/child.ts"
import type { BenchSystem } from "./types.ts"

const concurrency = Number(process.env.BENCH_CONDUCTOR_CONCURRENCY ?? 24)
const prefetch = Number(process.env.BENCH_CONDUCTOR_PREFETCH ?? 3176)
const claimBatch = Number(process.env.BENCH_CONDUCTOR_CLAIM_BATCH ?? 3200)
const workerOptions = { concurrency, prefetch, claimBatch, maxConnections: 8 }
const historySetting = (history: History) =>
  history === "none"
    ? "the no-op task has retention { completed: 0 }: a completed execution nobody awaits is deleted as it finishes (as graphile-worker and the hand-written queue delete theirs)"
    : "finished executions kept (moved to finished_executions), the library's default"

const adapterFor = (name: string, history: History): QueueAdapter => ({
  name,
  settings: () => ({
    worker: `Worker.layer({ concurrency: ${concurrency}, prefetch: ${prefetch}, claimBatch: ${claimBatch} }) in one process, PgClient pool of 8 (all open before the worker reports ready)`,
    insert: "conductor.invokeMany (one statement per 10k payloads); single invocation: conductor.invoke",
    store: `PgStore, schema conductor; ${historySetting(history)}`,
    w3: "one worker process: a task with 10 Durable.step calls, 500 invoked at once, worker concurrency = in-flight (24), prefetch 24 (claimed, not started)"
  }),
  worker: (mode) => ({
    module: workerModule("conductor"),
    options: { ...workerOptions, history, ...(mode === "latency" ? { prefetch: 0 } : {}) }
  }),
  setup: async (dbUrl) => {
    const { runtime } = await clientRuntime(dbUrl)
    await runtime.dispose()
  },
  inserter: async (dbUrl) => {
    const { runtime, conductor } = await clientRuntime(dbUrl)
    return {
      insert: async (payloads, runAt) => {
        await runtime.runPromise(
          conductor.invokeMany(Noop, payloads.map((payload) => ({ payload, options: { runAt } })))
        )
      },
      close: () => runtime.dispose()
    }
  },
  producer: async (dbUrl) => {
    const { runtime, conductor } = await clientRuntime(dbUrl)
    return {
      enqueue: async (payload) => {
        await runtime.runPromise(conductor.invoke(Noop, payload))
      },
      close: () => runtime.dispose()
    }
  },
  // Pending and due rows are read from their partial indexes (claim, due).
  // Running ones have no index (a running execution names only its worker),
  // so counting them scans the table. The runner uses this only when a worker
  // cannot count its committed completions; effect-conductor's can
  // (`Worker.committed`).
  remaining: async (c) =>
    Number(
      (await c.query(`select
        (select count(*) from conductor.executions where status = 'pending')
        + (select count(*) from conductor.executions where status = 'running')
        + (select count(*) from conductor.executions where status in ('scheduled', 'waiting') and run_at <= now()) as n`))
        .rows[0].n
    )
})

/** Also drained in the measuring process by `bench:inprocess`. */
export const adapter = adapterFor("conductor", defaultHistory)

export const conductor: BenchSystem = {
  ...queueSystem(adapter),
  w3: (ctx, p) =>
    runSteps(ctx, p, { module: workerModule("conductor-steps") }, async (dbUrl) => {
      const { runtime } = await clientRuntime(dbUrl)
      await runtime.dispose()
    })
}
export default conductor

/**
 * W1 with finished executions kept, the library's default, next to the
 * `conductor` rows (which keep none of the no-op task's, as the queues they
 * are compared with keep none of theirs).
 */
export const conductorKept: BenchSystem = {
  name: "conductor-kept",
  implemented: true,
  settings: () => ({ store: historySetting("keep"), worker: "as conductor" }),
  w1: queueSystem(adapterFor("conductor-kept", "keep")).w1
}
