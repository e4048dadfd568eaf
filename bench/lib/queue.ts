// W1, W2, W4 and W5 for any queue-like system, written once.
//
// A system describes itself as a QueueAdapter (how to create its schema, insert jobs
// in bulk, enqueue one job, count what is left, and which worker module its child
// processes run); queueSystem() turns that into a BenchSystem. Every system is thus
// timed the same way:
//
//  * jobs are inserted in bulk (chunks of INSERT_CHUNK payloads, one call each,
//    one connection): that is the insert rate;
//  * worker processes are then spawned and report "ready" (modules imported,
//    connections open, schema present) without consuming anything. Spawned
//    after the insert, they start draining as fresh processes whatever the
//    insert's length: a process that idles for the 20 s of a million-row
//    insert first had V8 shrink its heap meanwhile and then spent about 30% more
//    CPU per job on a 20k drain, which W4 would have counted as the backlog's;
//  * ANALYZE of the database, then CHECKPOINT; then "go" is sent to every worker
//    and the clock starts. Autovacuum is off for the system's tables from their
//    set-up on (see setUp): see bench/README.md;
//  * the drain ends when the workers' handlers have run for every job AND the
//    workers say they have committed that many completions (or, for workers that
//    cannot say, a query shows no due, uncompleted job left), polled every 2 ms
//    once the handler count is reached.
import pg from "pg"
import type {
  BenchContext,
  BenchSystem,
  W1Params,
  W1Result,
  W2Params,
  W2Result,
  W4Params,
  W4Result,
  W5Params,
  W5Result
} from "../systems/types.ts"
import type { WorkerHandle } from "./child.ts"
import { checkpoint, withClient } from "./pg.ts"
import { cpuMsOf, mainThreadCpuMsOf, nowMs, percentile, postgresCpuMs, sleep } from "./stats.ts"

export const INSERT_CHUNK = 10_000
const TIMEOUT_MS = Number(process.env.BENCH_TIMEOUT_S ?? 600) * 1000

export interface WorkerModuleSpec {
  readonly module: string
  readonly options?: unknown
  readonly execArgv?: ReadonlyArray<string>
}

export interface Inserter {
  /** insert these payloads as runnable jobs (or due at `runAt`) in one call */
  insert(payloads: ReadonlyArray<object>, runAt?: Date): Promise<void>
  close(): Promise<void>
}
export interface Producer {
  /** one single invocation, as an application would send it */
  enqueue(payload: { t: string }): Promise<void>
  close(): Promise<void>
}

export interface QueueAdapter {
  readonly name: string
  readonly implemented?: boolean
  settings(): Record<string, unknown>
  /** worker module for draining (W1, W4, W5) or for idle wake-ups (W2) */
  worker(mode: "drain" | "latency"): WorkerModuleSpec
  /** create schema / run migrations in the fresh database (not timed) */
  setup(dbUrl: string): Promise<void>
  inserter(dbUrl: string): Promise<Inserter>
  producer(dbUrl: string): Promise<Producer>
  /** number of jobs that are due now and whose completion is not committed yet */
  remaining(client: pg.Client): Promise<number>
  /** which workloads this adapter supports (default all: w1, w2, w4, w5) */
  readonly workloads?: ReadonlyArray<"w1" | "w2" | "w4" | "w5">
}

const waitUntil = async (what: string, cond: () => boolean | Promise<boolean>, intervalMs: number) => {
  const deadline = Date.now() + TIMEOUT_MS
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(intervalMs)
  }
}

const spawnWorkers = async (ctx: BenchContext, a: QueueAdapter, mode: "drain" | "latency", n: number) => {
  const spec = a.worker(mode)
  return Promise.all(
    Array.from({ length: n }, (_, i) =>
      ctx.spawnWorker({ ...spec, dbUrl: ctx.dbUrl, label: `${a.name}-${mode}-${i + 1}` })
    )
  )
}

export const insertJobs = async (a: QueueAdapter, dbUrl: string, n: number, runAt?: Date) => {
  const ins = await a.inserter(dbUrl)
  const t0 = nowMs()
  try {
    for (let from = 0; from < n; from += INSERT_CHUNK) {
      const count = Math.min(INSERT_CHUNK, n - from)
      await ins.insert(Array.from({ length: count }, (_, k) => ({ i: from + k })), runAt)
    }
  } finally {
    await ins.close()
  }
  return n / ((nowMs() - t0) / 1000)
}

/**
 * The system's schema, with autovacuum off for its tables: a bulk insert of
 * 100k or a million rows triggers an autovacuum that otherwise starts at some
 * moment of the next minute, inside one timed drain and not another.
 */
export const setUp = async (a: QueueAdapter, dbUrl: string) => {
  await a.setup(dbUrl)
  await withClient(dbUrl, async (c) => {
    // Plain tables and partitions (a partitioned parent stores nothing, and takes no such setting).
    const { rows } = await c.query<{ name: string }>(
      `select c.oid::regclass::text as name from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where c.relkind = 'r' and n.nspname not in ('pg_catalog', 'information_schema')`
    )
    for (const { name } of rows) await c.query(`alter table ${name} set (autovacuum_enabled = off)`)
  })
}

/** Statistics for the freshly inserted jobs (as autoanalyze would have them), then a CHECKPOINT. */
const settle = async (ctx: BenchContext, dbUrl: string) => {
  await withClient(dbUrl, (c) => c.query("analyze"))
  await checkpoint(ctx.adminUrl)
}

const TRACE = !!process.env.BENCH_TRACE

/** go -> every handler ran (handler count) and the completions are committed (the workers' counts, or the remaining query) */
const timeDrain = async (a: QueueAdapter, ctx: BenchContext, workers: WorkerHandle[], target: number, remainingAtEnd: number) => {
  const c = new pg.Client({ connectionString: ctx.dbUrl })
  await c.connect()
  try {
    await a.remaining(c) // warm the connection and plan
    let handled = 0
    let notify: () => void = () => {}
    const counts = workers.map(() => 0)
    let t0 = 0
    // Warm-up, for every system alike: when the first handler started, and
    // the rate over the second half of the jobs (from the report that first
    // counts half of them handled to the drain's end).
    let firstAt: number | undefined
    let half: { at: number; handled: number } | undefined
    workers.forEach((w, i) =>
      w.onProgress((n, first) => {
        counts[i] = n
        handled = counts.reduce((x, y) => x + y, 0)
        if (first !== undefined) firstAt = Math.min(firstAt ?? Infinity, Number(first) / 1e6)
        if (half === undefined && handled >= target / 2) half = { at: nowMs(), handled }
        if (TRACE) trace.push([nowMs() - t0, handled])
        if (handled >= target) notify()
      })
    )
    const allHandled = new Promise<void>((res) => (notify = res))
    const failed = Promise.race(workers.map((w) => w.finished().then(() => new Promise<never>(() => {}))))
    const workerCpu0 = workers.reduce((sum, w) => sum + cpuMsOf(w.pid), 0)
    const workerMainCpu0 = workers.reduce((sum, w) => sum + mainThreadCpuMsOf(w.pid), 0)
    const pgCpu0 = postgresCpuMs()
    const trace: Array<[number, number]> = []
    t0 = nowMs()
    for (const w of workers) w.go()
    await Promise.race([allHandled, failed, sleep(TIMEOUT_MS).then(() => Promise.reject(new Error("drain timed out")))])
    // The drain ends when the workers say they have committed `target`
    // completions; when a worker cannot say, when the adapter's query counts
    // what should remain.
    const committed = async () => {
      const counts = await Promise.all(workers.map((w) => w.committed()))
      if (counts.every((n) => n !== null)) return counts.reduce((x, y) => x! + y!, 0)! >= target
      return (await a.remaining(c)) <= remainingAtEnd
    }
    await waitUntil("completions to commit", committed, 2)
    const end = nowMs()
    const seconds = (end - t0) / 1000
    const firstJobMs = firstAt === undefined ? undefined : firstAt - t0
    const secondHalfPerSec = half === undefined || end <= half.at ? undefined : (target - half.handled) / ((end - half.at) / 1000)
    if (TRACE) console.error(`trace n=${target} procs=${workers.length}: ` + trace.filter((_, k) => k % 4 === 0).map(([t, h]) => `${t.toFixed(0)}:${h}`).join(" ") + ` end ${(seconds * 1000).toFixed(0)}`)
    // CPU spent during the drain, per job: the worker processes', and the local
    // Postgres server's (all its processes; includes this runner's polling).
    const workerCpuUsPerJob = ((workers.reduce((sum, w) => sum + cpuMsOf(w.pid), 0) - workerCpu0) * 1000) / target
    const workerMainThreadCpuUsPerJob =
      ((workers.reduce((sum, w) => sum + mainThreadCpuMsOf(w.pid), 0) - workerMainCpu0) * 1000) / target
    const pgCpuUsPerJob = ((postgresCpuMs() - pgCpu0) * 1000) / target
    return { seconds, firstJobMs, secondHalfPerSec, workerCpuUsPerJob, workerMainThreadCpuUsPerJob, pgCpuUsPerJob }
  } finally {
    await c.end()
  }
}

const stopAll = async (workers: WorkerHandle[]) => {
  const reports = await Promise.all(workers.map((w) => w.stop()))
  return { peakRssMB: Math.max(...reports.map((r) => r.peakRssKb / 1024)), reports }
}

export const queueSystem = (a: QueueAdapter): BenchSystem => {
  const has = (w: "w1" | "w2" | "w4" | "w5") => !a.workloads || a.workloads.includes(w)

  const w1 = async (ctx: BenchContext, p: W1Params): Promise<W1Result> => {
    await setUp(a, ctx.dbUrl)
    const insertPerSec = await insertJobs(a, ctx.dbUrl, p.n)
    const workers = await spawnWorkers(ctx, a, "drain", p.processes)
    await settle(ctx, ctx.dbUrl)
    const { seconds, firstJobMs, secondHalfPerSec, workerCpuUsPerJob, workerMainThreadCpuUsPerJob, pgCpuUsPerJob } = await timeDrain(a, ctx, workers, p.n, 0)
    const { peakRssMB } = await stopAll(workers)
    return {
      insertPerSec,
      drainPerSec: p.n / seconds,
      firstJobMs,
      secondHalfPerSec,
      workerPeakRssMB: peakRssMB,
      workerCpuUsPerJob,
      workerMainThreadCpuUsPerJob,
      pgCpuUsPerJob
    }
  }

  const w2 = async (ctx: BenchContext, p: W2Params): Promise<W2Result> => {
    await a.setup(ctx.dbUrl)
    const [worker] = await spawnWorkers(ctx, a, "latency", 1)
    worker!.go()
    await sleep(1000) // started and idle
    const producer = await a.producer(ctx.dbUrl)
    const enqueueMs: number[] = []
    try {
      await producer.enqueue({ t: process.hrtime.bigint().toString() }) // warm-up, not counted
      await waitUntil("warm-up job", () => worker!.handled >= 1, 2)
      await sleep(200)
      const t0 = nowMs()
      for (let i = 0; i < p.count; i++) {
        const due = t0 + (i * 1000) / p.rate
        const wait = due - nowMs()
        if (wait > 0) await sleep(wait)
        const start = nowMs()
        await producer.enqueue({ t: process.hrtime.bigint().toString() })
        enqueueMs.push(nowMs() - start)
      }
      await waitUntil("all invocations to start", () => worker!.handled >= p.count + 1, 5)
    } finally {
      await producer.close()
    }
    const { reports } = await stopAll([worker!])
    const lat = reports[0]!.latenciesMs.slice(1)
    return {
      p50: percentile(lat, 50),
      p95: percentile(lat, 95),
      p99: percentile(lat, 99),
      max: Math.max(...lat),
      enqueueP50: percentile(enqueueMs, 50),
      enqueueP99: percentile(enqueueMs, 99)
    }
  }

  const w4 = async (ctx: BenchContext, p: W4Params): Promise<W4Result> => {
    // W4a: `backlog` runnable jobs, time the first `drain`
    await setUp(a, ctx.dbUrl)
    const backlogInsertPerSec = await insertJobs(a, ctx.dbUrl, p.backlog)
    let workers = await spawnWorkers(ctx, a, "drain", 1)
    await settle(ctx, ctx.dbUrl)
    const first = await timeDrain(a, ctx, workers, p.drain, p.backlog - p.drain)
    await stopAll(workers)
    // W4b: `backlog` sleeping jobs (due in an hour), then `runnable` runnable ones
    const db2 = await ctx.freshDatabase("sleeping")
    const ctx2 = { ...ctx, dbUrl: db2 }
    await setUp(a, db2)
    await insertJobs(a, db2, p.backlog, new Date(Date.now() + 3600_000))
    await insertJobs(a, db2, p.runnable)
    workers = await spawnWorkers(ctx2, a, "drain", 1)
    await settle(ctx, db2)
    const second = await timeDrain(a, ctx2, workers, p.runnable, 0)
    await stopAll(workers)
    return {
      backlogDrainPerSec: p.drain / first.seconds,
      sleepingDrainPerSec: p.runnable / second.seconds,
      backlogInsertPerSec,
      backlogWorkerCpuUsPerJob: first.workerCpuUsPerJob,
      backlogPgCpuUsPerJob: first.pgCpuUsPerJob,
      sleepingWorkerCpuUsPerJob: second.workerCpuUsPerJob,
      sleepingPgCpuUsPerJob: second.pgCpuUsPerJob
    }
  }

  const w5 = async (ctx: BenchContext, p: W5Params): Promise<W5Result> => {
    const r = await w1(ctx, { n: p.n, processes: 1 })
    return { peakRssMB: r.workerPeakRssMB!, drainPerSec: r.drainPerSec }
  }

  return {
    name: a.name,
    implemented: a.implemented ?? true,
    settings: () => a.settings(),
    ...(has("w1") ? { w1 } : {}),
    ...(has("w2") ? { w2 } : {}),
    ...(has("w4") ? { w4 } : {}),
    ...(has("w5") ? { w5 } : {})
  }
}
