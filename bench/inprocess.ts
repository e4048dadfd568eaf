// W1 with each system's worker in this process: no child process, no IPC, no
// runner beside it. Run from the repo root with `npm run bench:inprocess`.
//
// It splits a drain's CPU between the worker (this process's CPU, which while
// the clock runs is the worker's but for a check of the drain's end every
// 2 ms) and Postgres (every local `postgres` process), so two systems' costs
// per job can be compared side by side. The worker modules and the set-up, insert and settle steps are
// W1's own (bench/workers, bench/lib/queue.ts); rounds interleave the systems
// on one server with the bench's settings, and medians are printed.
//
// Env: BENCH_INPROCESS_SYSTEMS (comma list of conductor, sql-baseline; default
// both), BENCH_INPROCESS_N (jobs, default 100000), BENCH_REPEAT (rounds,
// default 3), BENCH_INPROCESS_PROFILE (a directory: a CPU profile of each
// drain, and of the drain only, is written there; with
// BENCH_INPROCESS_PROFILE_HEAP=1 an allocation profile instead), DATABASE_URL.
import { mkdirSync, writeFileSync } from "node:fs"
import { Session } from "node:inspector/promises"
import { join } from "node:path"
import { pathToFileURL } from "node:url"
import pg from "pg"
import { checkpoint, readServerSettings, startServer } from "./lib/pg.ts"
import { insertJobs, type QueueAdapter, setUp } from "./lib/queue.ts"
import { chooseNames, makeLog, runRounds, writeResults } from "./lib/rounds.ts"
import { median, postgresCpuMs, round, sleep } from "./lib/stats.ts"
import type { WorkerFactory } from "./lib/worker-host.ts"
import { adapter as conductor } from "./systems/conductor.ts"
import { adapter as sqlBaseline } from "./systems/sql-baseline.ts"

const env = process.env
const N = Number(env.BENCH_INPROCESS_N ?? 100_000)
const ROUNDS = Number(env.BENCH_REPEAT ?? 3)
const SYSTEMS: Record<string, QueueAdapter> = { conductor, "sql-baseline": sqlBaseline }
const chosen = chooseNames(env.BENCH_INPROCESS_SYSTEMS, Object.keys(SYSTEMS), "system")
const log = makeLog("inprocess")
const PROFILE_DIR = env.BENCH_INPROCESS_PROFILE

/**
 * Profiles `drain` alone (not the set-up or the insert) into PROFILE_DIR, when
 * set: its CPU, or with BENCH_INPROCESS_PROFILE_HEAP=1 what it allocates
 * (sampled every 1 KB, counting objects already collected).
 */
const profiled = async <A>(file: string, drain: () => Promise<A>): Promise<A> => {
  if (PROFILE_DIR === undefined) return drain()
  const heap = env.BENCH_INPROCESS_PROFILE_HEAP === "1"
  const session = new Session()
  session.connect()
  if (heap) {
    await session.post("HeapProfiler.enable")
    await session.post("HeapProfiler.startSampling", {
      samplingInterval: 1024,
      includeObjectsCollectedByMajorGC: true,
      includeObjectsCollectedByMinorGC: true
    })
  } else {
    await session.post("Profiler.enable")
    await session.post("Profiler.setSamplingInterval", { interval: 100 })
    await session.post("Profiler.start")
  }
  try {
    return await drain()
  } finally {
    const profile = heap
      ? (await session.post("HeapProfiler.stopSampling")).profile
      : (await session.post("Profiler.stop")).profile
    const path = join(PROFILE_DIR, heap ? file.replace(/\.cpuprofile$/, ".heapprofile") : file)
    mkdirSync(PROFILE_DIR, { recursive: true })
    writeFileSync(path, JSON.stringify(profile))
    session.disconnect()
    log(`wrote ${path}`)
  }
}
const server = await startServer((line) => env.BENCH_PG_LOG === "1" && log(line))
interface Run { jobsPerSec: number; workerCpuUsPerJob: number; pgCpuUsPerJob: number }

const runOne = async (name: string, r: number): Promise<Run> => {
  const a = SYSTEMS[name]!
  const dbName = `inprocess_${r}_${chosen.indexOf(name)}_${Date.now()}`
  const dbUrl = await server.createDatabase(dbName)
  try {
    await setUp(a, dbUrl)
    await insertJobs(a, dbUrl, N)
    const spec = a.worker("drain")
    const factory = (await import(pathToFileURL(spec.module).href)).default as WorkerFactory
    let handled = 0
    const worker = await factory({ dbUrl, options: spec.options, onJob: () => void handled++ })
    const c = new pg.Client({ connectionString: dbUrl })
    await c.connect()
    try {
      await c.query("analyze")
      await checkpoint(server.url)
      // As W1 ends a drain: every handler has run, and every completion is committed.
      const done = async () => {
        if (handled < N) return false
        const committed = worker.committed ? await worker.committed() : null
        return committed === null ? (await a.remaining(c)) === 0 : committed >= N
      }
      return await profiled(`${name}-${r}.cpuprofile`, async () => {
        const cpu0 = process.cpuUsage()
        const pg0 = postgresCpuMs()
        const t0 = performance.now()
        await worker.start()
        while (!(await done())) await sleep(2)
        const seconds = (performance.now() - t0) / 1000
        const cpu = process.cpuUsage(cpu0)
        const pgMs = postgresCpuMs() - pg0
        return { jobsPerSec: N / seconds, workerCpuUsPerJob: (cpu.user + cpu.system) / N, pgCpuUsPerJob: (pgMs * 1000) / N }
      })
    } finally {
      await worker.stop()
      await c.end()
    }
  } finally {
    await server.dropDatabase(dbName)
  }
}

try {
  const settings = await readServerSettings(server.url)
  log(`server ${server.source}: ${JSON.stringify(settings)}`)
  const runs = await runRounds(chosen, ROUNDS, runOne, log)
  const med = (name: string, key: keyof Run) => median(runs[name]!.map((r) => r[key]))
  const reference = runs["sql-baseline"] ? med("sql-baseline", "jobsPerSec") : undefined
  const lines = [
    `### W1 in one process: ${N.toLocaleString("en-US")} jobs, each system's worker in the measuring process, medians of ${ROUNDS}`,
    "",
    `| system | drain jobs/s | x sql-baseline | worker CPU µs/job | Postgres CPU µs/job |`,
    `|---|---:|---:|---:|---:|`,
    ...chosen.map((name) =>
      `| ${name} | ${Math.round(med(name, "jobsPerSec")).toLocaleString("en-US")} | ${reference ? round(med(name, "jobsPerSec") / reference, 2).toFixed(2) : "-"} | ${round(med(name, "workerCpuUsPerJob"), 1)} | ${round(med(name, "pgCpuUsPerJob"), 1)} |`
    )
  ]
  console.log(lines.join("\n"))
  writeResults("inprocess", { n: N, rounds: ROUNDS, settings, runs }, log)
} finally {
  await server.stop()
}
