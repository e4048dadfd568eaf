// The worker's own CPU per job, with no database: W1's no-op drain against a
// store that answers every claim and write at once (on the next turn of the
// event loop). What it measures is the engine alone (claim bookkeeping,
// buffer, fibers, payload decode, outcomes), without the driver, Postgres or
// the noise they bring, so a change to the worker's hot path shows in a
// minute. Run from the repo root with `npm run bench:worker`.
//
// Env: BENCH_WORKER_SOURCES (comma list of checkouts whose src/ to load, e.g.
// a worktree of another revision; default this one), BENCH_WORKER_N (jobs per
// drain, default 200000), BENCH_REPEAT (processes per checkout, alternated,
// default 4; each warms up with one drain, then times 5).
import { execFileSync } from "node:child_process"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { makeLog, writeResults } from "./lib/rounds.ts"
import { median, round } from "./lib/stats.ts"

const env = process.env
const N = Number(env.BENCH_WORKER_N ?? 200_000)
const DRAINS = 5

if (env.BENCH_WORKER_CHILD !== undefined) {
  // One process: load a checkout's worker and drain N jobs DRAINS + 1 times.
  const { Effect, Exit, Layer, PubSub, Schema, Scope } = await import("effect")
  const root = env.BENCH_WORKER_CHILD
  const { Store } = await import(path.join(root, "src/internal/Store.ts"))
  const { Registry } = await import(path.join(root, "src/internal/Registry.ts"))
  const { Worker } = await import(path.join(root, "src/Worker.ts"))
  const Task = await import(path.join(root, "src/Task.ts"))
  /** Answers on the next turn of the event loop, as a reply from the database would. */
  const reply = <A>(value: () => A) => Effect.callback<A>((resume) => void setImmediate(() => resume(Effect.succeed(value()))))
  let next = 0
  let remaining = 0
  let committed = 0
  const store = {
    kind: "instant",
    offers: false,
    now: Effect.sync(() => Date.now()),
    // Fresh objects per claim, shaped as PgStore's (payload parsed from JSON text).
    claim: (o: { limit: number }) =>
      reply(() => {
        const taken = Math.min(o.limit, remaining)
        remaining -= taken
        const rows = []
        for (let i = 0; i < taken; i++) {
          const n = next++
          rows.push({
            id: `0190a1b2-c3d4-7e5f-8a9b-${n.toString(16).padStart(12, "0")}`,
            task: "noop",
            payload: JSON.parse(`{"i":${n}}`),
            attempt: 1,
            maxAttempts: 3,
            parentId: undefined,
            fresh: true
          })
        }
        return rows
      }),
    finish: (_worker: string, outcomes: ReadonlyArray<unknown>) => reply(() => void (committed += outcomes.length)),
    orphans: () => Effect.succeed([]),
    heartbeat: () => Effect.succeed({ lost: [], cancelRequested: [], dispatched: 0 }),
    recoverExpiredLeases: Effect.succeed(0),
    abandon: () => Effect.succeed(0),
    retireWorker: () => Effect.void,
    withdrawOffer: () => Effect.succeed(0),
    reoffer: () => Effect.void,
    promoteDue: Effect.succeed({ next: undefined, more: false }),
    setRetention: () => Effect.void,
    sweepFinished: () => Effect.succeed(0),
    signals: Effect.flatMap(PubSub.unbounded<never>(), (hub) => PubSub.subscribe(hub)),
    signalWork: () => Effect.void
  }
  // W1's task and worker settings (bench/lib/conductor.ts, systems/conductor.ts).
  const noop = Task.make("noop", {
    payload: Schema.Struct({ i: Schema.optional(Schema.Number), t: Schema.optional(Schema.String) }),
    retention: { completed: 0 }
  })
  const services = Layer.mergeAll(Layer.succeed(Store, store), Registry.layer)
  const worker = Worker.layer({ concurrency: 24, prefetch: 1576, claimBatch: 1600 }).pipe(
    Layer.provide(noop.toLayer(() => Effect.void)),
    Layer.provide(services)
  )
  const drain = async () => {
    remaining = N
    committed = 0
    const scope = Effect.runSync(Scope.make())
    const cpu0 = process.cpuUsage()
    const t0 = performance.now()
    await Effect.runPromise(Layer.buildWithScope(worker, scope))
    while (committed < N) await new Promise((resolve) => setTimeout(resolve, 1))
    const cpu = process.cpuUsage(cpu0)
    const seconds = (performance.now() - t0) / 1000
    await Effect.runPromise(Scope.close(scope, Exit.void))
    return { cpuUsPerJob: (cpu.user + cpu.system) / N, jobsPerSec: N / seconds }
  }
  await drain()
  const drains = []
  for (let i = 0; i < DRAINS; i++) drains.push(await drain())
  process.stdout.write(JSON.stringify(drains))
} else {
  const log = makeLog("worker")
  const repoDir = path.dirname(path.dirname(fileURLToPath(import.meta.url)))
  const sources = (env.BENCH_WORKER_SOURCES ?? repoDir).split(",").map((dir) => path.resolve(dir.trim()))
  const repeat = Number(env.BENCH_REPEAT ?? 4)
  const runs: Record<string, Array<{ cpuUsPerJob: number; jobsPerSec: number }>> = Object.fromEntries(sources.map((s) => [s, []]))
  for (let r = 0; r < repeat; r++) {
    const order = sources.map((_, i) => sources[(i + r) % sources.length]!)
    for (const source of order) {
      const out = execFileSync(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url)], {
        env: { ...env, BENCH_WORKER_CHILD: source },
        encoding: "utf8",
        stdio: ["ignore", "pipe", "inherit"]
      })
      const drains = JSON.parse(out) as Array<{ cpuUsPerJob: number; jobsPerSec: number }>
      runs[source]!.push(...drains)
      log(`${source} #${r + 1}: ${drains.map((d) => round(d.cpuUsPerJob, 2)).join(" ")} µs/job`)
    }
  }
  const lines = [
    `### The worker alone: ${N.toLocaleString("en-US")}-job no-op drains against an instant store, ${repeat} processes x ${DRAINS} drains per checkout`,
    "",
    "| checkout | CPU µs/job, median | lowest | jobs/s, median |",
    "|---|---:|---:|---:|",
    ...sources.map((source) => {
      const cpu = runs[source]!.map((d) => d.cpuUsPerJob)
      return `| ${source} | ${round(median(cpu), 2).toFixed(2)} | ${round(Math.min(...cpu), 2).toFixed(2)} | ${
        Math.round(median(runs[source]!.map((d) => d.jobsPerSec))).toLocaleString("en-US")
      } |`
    })
  ]
  console.log(lines.join("\n"))
  writeResults("worker", { n: N, repeat, drains: DRAINS, runs }, log)
}
