// Benchmark runner (issue 5). Run from the repo root with `npm run bench`.
//
// Env:
//   BENCH_SYSTEMS     comma list (default: every implemented system)
//   BENCH_WORKLOADS   comma list of w1,w2,w3,w4,w5 (default all)
//   BENCH_REPEAT      repetitions per workload, medians reported (default 3; W1 5)
//   BENCH_W1_REPEAT   repetitions of W1 (default 5, or BENCH_REPEAT when that is set)
//   BENCH_W1_SIZES    default 20000,100000      BENCH_W1_PROCESSES default 1,2
//   BENCH_W2_COUNT    default 500               BENCH_W2_RATE      default 100 (per second)
//   BENCH_W3_WORKFLOWS default 500  BENCH_W3_STEPS default 10  BENCH_W3_INFLIGHT default 24
//   BENCH_W4_BACKLOG  default 1000000  BENCH_W4_DRAIN default 100000  BENCH_W4_RUNNABLE default 20000
//   BENCH_W5_N        default 100000
//   BENCH_PEERS_W45=1 also run W4/W5 for graphile-worker and pg-boss (off by default: slow)
//   BENCH_TIMEOUT_S   per wait (default 600)
//   BENCH_PG_LOG=1    print the server's log lines
//   BENCH_TRACE=1     print each drain's progress (ms:handled)
//   DATABASE_URL      use this server instead of starting one (its settings are printed, not changed)
import { mkdirSync, writeFileSync } from "node:fs"
import * as os from "node:os"
import { fileURLToPath } from "node:url"
import { makeSpawner, type WorkerHandle } from "./lib/child.ts"
import { readServerSettings, startServer, type Server } from "./lib/pg.ts"
import { median, round } from "./lib/stats.ts"
import type { BenchContext, BenchSystem } from "./systems/types.ts"
import { conductor, conductorKept } from "./systems/conductor.ts"
import { dbos } from "./systems/dbos.ts"
import { graphileWorker } from "./systems/graphile-worker.ts"
import { pgBoss } from "./systems/pg-boss.ts"
import { sqlBaseline } from "./systems/sql-baseline.ts"
import { notifyFloor } from "./systems/notify-floor.ts"

const ALL_SYSTEMS: BenchSystem[] = [conductor, conductorKept, graphileWorker, pgBoss, dbos, sqlBaseline, notifyFloor]

const env = process.env
const LOAD_AT_START = os.loadavg().map((x) => Math.round(x * 100) / 100)
const list = (v: string | undefined, d: string) => (v ?? d).split(",").map((s) => s.trim()).filter(Boolean)
const int = (v: string | undefined, d: number) => (v ? Number(v.replace(/_/g, "")) : d)
const REPEAT = int(env.BENCH_REPEAT, 3)
// W1 carries eight of the targets' ratios, and one drain of 20k jobs lasts a
// few tenths of a second: its speed varies by a fifth from one drain to the
// next on this machine. Five repetitions cost about two minutes more than
// three (W1 takes about a minute per repetition, all systems) and steady the medians.
const W1_REPEAT = int(env.BENCH_W1_REPEAT, env.BENCH_REPEAT ? REPEAT : 5)
const repeatOf = (workload: string) => (workload === "w1" ? W1_REPEAT : REPEAT)
const WORKLOADS = new Set(list(env.BENCH_WORKLOADS, "w1,w2,w3,w4,w5"))
const SYSTEMS = env.BENCH_SYSTEMS ? new Set(list(env.BENCH_SYSTEMS, "")) : undefined
const W1_SIZES = list(env.BENCH_W1_SIZES, "20000,100000").map((x) => int(x, 0))
const W1_PROCS = list(env.BENCH_W1_PROCESSES, "1,2").map((x) => int(x, 0))
const W2 = { count: int(env.BENCH_W2_COUNT, 500), rate: int(env.BENCH_W2_RATE, 100) }
const W3 = { workflows: int(env.BENCH_W3_WORKFLOWS, 500), steps: int(env.BENCH_W3_STEPS, 10), inFlight: int(env.BENCH_W3_INFLIGHT, 24) }
const W4 = { backlog: int(env.BENCH_W4_BACKLOG, 1_000_000), drain: int(env.BENCH_W4_DRAIN, 100_000), runnable: int(env.BENCH_W4_RUNNABLE, 20_000) }
const W5 = { n: int(env.BENCH_W5_N, 100_000) }
const PEERS_W45 = env.BENCH_PEERS_W45 === "1"

const T0 = Date.now()
const log = (line: string) => process.stderr.write(`[bench ${((Date.now() - T0) / 1000).toFixed(1).padStart(6)}s] ${line}\n`)

const WORKLOAD_ORDER = ["w1", "w2", "w3", "w4", "w5"]

interface Case {
  system: BenchSystem
  workload: "w1" | "w2" | "w3" | "w4" | "w5"
  label: string
  params: Record<string, number>
  run: (ctx: BenchContext) => Promise<Record<string, number | undefined>>
}

const cases = (s: BenchSystem): Case[] => {
  const out: Case[] = []
  const peer = s.name === "graphile-worker" || s.name === "pg-boss"
  if (WORKLOADS.has("w1") && s.w1)
    for (const n of W1_SIZES)
      for (const processes of W1_PROCS)
        out.push({ system: s, workload: "w1", label: `W1 n=${n} procs=${processes}`, params: { n, processes }, run: (c) => s.w1!(c, { n, processes }) as any })
  if (WORKLOADS.has("w2") && s.w2) out.push({ system: s, workload: "w2", label: "W2", params: W2, run: (c) => s.w2!(c, W2) as any })
  if (WORKLOADS.has("w3") && s.w3) out.push({ system: s, workload: "w3", label: "W3", params: W3, run: (c) => s.w3!(c, W3) as any })
  if (WORKLOADS.has("w4") && s.w4 && (!peer || PEERS_W45)) out.push({ system: s, workload: "w4", label: "W4", params: W4, run: (c) => s.w4!(c, W4) as any })
  if (WORKLOADS.has("w5") && s.w5 && (!peer || PEERS_W45)) out.push({ system: s, workload: "w5", label: "W5", params: W5, run: (c) => s.w5!(c, W5) as any })
  return out
}

interface CaseResult {
  system: string
  workload: string
  label: string
  params: Record<string, number>
  runs: Array<Record<string, number | undefined>>
  median: Record<string, number>
  error?: string
}

const live = new Set<WorkerHandle>()
let server: Server | undefined
const cleanup = async () => {
  await Promise.all([...live].map((h) => h.kill()))
  await server?.stop().catch(() => {})
}
for (const sig of ["SIGINT", "SIGTERM"] as const)
  process.on(sig, () => {
    void cleanup().finally(() => process.exit(130))
  })

const main = async () => {
  const node = process.execPath
  if (Number(process.versions.node.split(".")[0]) < 22) log(`warning: running on Node ${process.version}; the suite expects Node 22`)
  const selected = ALL_SYSTEMS.filter((s) => !SYSTEMS || SYSTEMS.has(s.name))
  for (const s of selected) if (!s.implemented) log(`${s.name}: not implemented yet, skipped`)
  const systems = selected.filter((s) => s.implemented)
  const plan = systems.flatMap(cases)
  log(`${plan.length} cases x ${REPEAT} repeats (W1: ${W1_REPEAT}) on Node ${process.version}`)

  const pgLog: string[] = []
  server = await startServer((l) => {
    if (env.BENCH_PG_LOG === "1") log(`postgres: ${l}`)
    pgLog.push(l)
    if (pgLog.length > 50) pgLog.shift()
  })
  process.on("exit", (code) => {
    if (code !== 0 && env.BENCH_PG_LOG !== "1") for (const l of pgLog) process.stderr.write(`[postgres] ${l}\n`)
  })
  const serverSettings = await readServerSettings(server.url)
  log(`postgres from ${server.source}: ${JSON.stringify(serverSettings)}`)

  // Cases of one workload (same label) run interleaved, repetition by
  // repetition: every system's first run, then every system's second, and so
  // on. On a shared machine throughput drifts over minutes; side by side, the
  // systems of one workload are measured in the same minute, so the ratios
  // between them hold even when the machine's speed does not.
  const state = new Map(plan.map((c) => [c, { runs: [] as Array<Record<string, number | undefined>>, error: undefined as string | undefined }]))
  const groups = new Map<string, Case[]>()
  for (const c of plan) groups.set(`${c.workload} ${c.label}`, [...(groups.get(`${c.workload} ${c.label}`) ?? []), c])
  const order = [...groups.values()].sort((a, b) => WORKLOAD_ORDER.indexOf(a[0]!.workload) - WORKLOAD_ORDER.indexOf(b[0]!.workload))
  let dbSeq = 0
  for (const group of order) for (let r = 1; r <= repeatOf(group[0]!.workload); r++) for (const c of group) {
    const st = state.get(c)!
    if (st.error) continue
    const dbs: string[] = []
    const fresh = async (label: string) => {
      const name = `bench_${c.system.name.replace(/[^a-z0-9]/g, "_")}_${c.workload}_${++dbSeq}_${label}`.slice(0, 63)
      const url = await server!.createDatabase(name)
      dbs.push(name)
      return { name, url }
    }
    const handles: WorkerHandle[] = []
    try {
      const first = await fresh("a")
      const ctx: BenchContext = {
        dbUrl: first.url,
        dbName: first.name,
        adminUrl: server!.url,
        node,
        log,
        freshDatabase: async (label) => (await fresh(label)).url,
        spawnWorker: makeSpawner(node, (h) => {
          handles.push(h)
          live.add(h)
        })
      }
      const t0 = Date.now()
      const out = await c.run(ctx)
      st.runs.push(out)
      log(`${c.system.name} ${c.label} #${r}: ${JSON.stringify(roundAll(out))} (${((Date.now() - t0) / 1000).toFixed(1)} s)`)
    } catch (e) {
      st.error = e instanceof Error ? e.message : String(e)
      log(`${c.system.name} ${c.label} #${r} FAILED: ${st.error}`)
    } finally {
      for (const h of handles) {
        await h.kill()
        live.delete(h)
      }
      for (const d of dbs) await server!.dropDatabase(d).catch((e) => log(`drop ${d}: ${e}`))
    }
  }
  const results: CaseResult[] = plan.map((c) => {
    const { runs, error } = state.get(c)!
    const keys = [...new Set(runs.flatMap((x) => Object.keys(x)))]
    const med = Object.fromEntries(keys.map((k) => [k, median(runs.map((x) => x[k]).filter((v): v is number => v !== undefined))]))
    return { system: c.system.name, workload: c.workload, label: c.label, params: c.params, runs, median: med, ...(error ? { error } : {}) }
  })

  const report = {
    date: new Date().toISOString(),
    durationSeconds: Math.round((Date.now() - T0) / 1000),
    loadAverage: { atStart: LOAD_AT_START, atEnd: os.loadavg().map((x) => round(x, 2)) },
    node: process.version,
    platform: `${process.platform} ${process.arch}`,
    cpus: os.cpus().length,
    repeat: REPEAT,
    w1Repeat: W1_REPEAT,
    postgres: { source: server.source, ...serverSettings },
    systems: Object.fromEntries(systems.map((s) => [s.name, s.settings()])),
    results
  }
  const md = markdown(report)
  process.stdout.write(md + "\n")
  const dir = fileURLToPath(new URL("./results/", import.meta.url))
  mkdirSync(dir, { recursive: true })
  const file = `${dir}${report.date.replace(/[:.]/g, "-")}.json`
  writeFileSync(file, JSON.stringify(report, null, 2))
  log(`wrote ${file}`)
}

const roundAll = (o: Record<string, number | undefined>) =>
  Object.fromEntries(Object.entries(o).map(([k, v]) => [k, v === undefined ? v : round(v, v < 10 ? 2 : 0)]))

const fmt = (v: number | undefined, digits = 0) =>
  v === undefined || Number.isNaN(v) ? "–" : v.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits })

const markdown = (rep: { loadAverage: { atStart: number[] }; results: CaseResult[]; postgres: Record<string, string>; systems: Record<string, unknown>; node: string; repeat: number; w1Repeat: number; cpus: number }) => {
  const out: string[] = []
  const rs = rep.results
  const by = (w: string) => rs.filter((r) => r.workload === w)
  const err = (r: CaseResult) => (r.error ? ` (failed: ${r.error.split("\n")[0]})` : "")
  out.push(`## Benchmark results (median of ${rep.repeat}, of W1 ${rep.w1Repeat}; Node ${rep.node}; ${rep.cpus} CPUs; load average at start ${rep.loadAverage.atStart.join(" ")})`)
  out.push("")
  if (by("w1").length) {
    out.push("### W1 burn-down (no-op jobs inserted in bulk, then drained)", "")
    out.push("| system | jobs | worker processes | insert jobs/s | drain jobs/s | first job ms | second half jobs/s | worker peak RSS MB | worker CPU µs/job (main thread) | Postgres CPU µs/job |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for (const r of by("w1"))
      out.push(`| ${r.system}${err(r)} | ${fmt(r.params.n)} | ${r.params.processes} | ${fmt(r.median.insertPerSec)} | ${fmt(r.median.drainPerSec)} | ${fmt(r.median.firstJobMs)} | ${fmt(r.median.secondHalfPerSec)} | ${fmt(r.median.workerPeakRssMB)} | ${fmt(r.median.workerCpuUsPerJob)} (${fmt(r.median.workerMainThreadCpuUsPerJob)}) | ${fmt(r.median.pgCpuUsPerJob)} |`)
    out.push("")
  }
  if (by("w2").length) {
    out.push(`### W2 wake latency (idle worker, ${W2.count} single invocations at ${W2.rate}/s, enqueue to handler start)`, "")
    out.push("| system | p50 ms | p95 ms | p99 ms | max ms | enqueue call p50 / p99 ms |", "|---|---:|---:|---:|---:|---:|")
    for (const r of by("w2"))
      out.push(`| ${r.system}${err(r)} | ${fmt(r.median.p50, 2)} | ${fmt(r.median.p95, 2)} | ${fmt(r.median.p99, 2)} | ${fmt(r.median.max, 1)} | ${fmt(r.median.enqueueP50, 2)} / ${fmt(r.median.enqueueP99, 2)} |`)
    out.push("")
  }
  if (by("w3").length) {
    out.push(`### W3 durable steps (${W3.workflows} workflows x ${W3.steps} steps, ${W3.inFlight} in flight)`, "")
    out.push("| system | workflows/s | steps/s | xacts/step | WAL bytes/step | worker CPU µs/step (main thread) |", "|---|---:|---:|---:|---:|---:|")
    for (const r of by("w3"))
      out.push(`| ${r.system}${err(r)} | ${fmt(r.median.workflowsPerSec)} | ${fmt(r.median.stepsPerSec)} | ${fmt(r.median.xactsPerStep, 2)} | ${fmt(r.median.walBytesPerStep)} | ${fmt(r.median.workerCpuUsPerStep)} (${fmt(r.median.workerMainThreadCpuUsPerStep)}) |`)
    out.push("")
  }
  const w1At = (sys: string, n: number, p: number) => rs.find((r) => r.workload === "w1" && r.system === sys && r.params.n === n && r.params.processes === p)?.median.drainPerSec
  if (by("w4").length) {
    out.push(`### W4 backlog (one worker process)`, "")
    out.push(
      `| system | drain first ${fmt(W4.drain)} of ${fmt(W4.backlog)} runnable, jobs/s | ratio to W1 n=${fmt(W4.drain)} | drain ${fmt(W4.runnable)} with ${fmt(W4.backlog)} sleeping, jobs/s | ratio to W1 n=${fmt(W4.runnable)} | backlog insert jobs/s | worker / Postgres CPU µs/job (runnable; sleeping) |`,
      "|---|---:|---:|---:|---:|---:|---|"
    )
    for (const r of by("w4")) {
      const a = w1At(r.system, W4.drain, 1)
      const b = w1At(r.system, W4.runnable, 1)
      out.push(
        `| ${r.system}${err(r)} | ${fmt(r.median.backlogDrainPerSec)} | ${a ? fmt(r.median.backlogDrainPerSec! / a, 2) : "–"} | ${fmt(r.median.sleepingDrainPerSec)} | ${b ? fmt(r.median.sleepingDrainPerSec! / b, 2) : "–"} | ${fmt(r.median.backlogInsertPerSec)} | ${fmt(r.median.backlogWorkerCpuUsPerJob)} / ${fmt(r.median.backlogPgCpuUsPerJob)}; ${fmt(r.median.sleepingWorkerCpuUsPerJob)} / ${fmt(r.median.sleepingPgCpuUsPerJob)} |`
      )
    }
    out.push("")
  }
  if (by("w5").length) {
    out.push(`### W5 memory (one worker process draining ${fmt(W5.n)} jobs)`, "")
    out.push("| system | peak RSS MB | drain jobs/s |", "|---|---:|---:|")
    for (const r of by("w5")) out.push(`| ${r.system}${err(r)} | ${fmt(r.median.peakRssMB)} | ${fmt(r.median.drainPerSec)} |`)
    out.push("")
  }
  const targets = targetLines(rs, w1At)
  if (targets.length) out.push("### Targets (issue 5) for conductor", "", "| target | value | met |", "|---|---:|:---:|", ...targets, "")
  out.push(
    "### Settings",
    "",
    "Postgres: " + Object.entries(rep.postgres).map(([k, v]) => `${k}=${v}`).join(", "),
    "",
    "Drains (W1, W4, W5): autovacuum off for every system's tables from set-up on; ANALYZE, then CHECKPOINT, before each.",
    ""
  )
  for (const [name, s] of Object.entries(rep.systems)) out.push(`- **${name}**: ${Object.entries(s as object).map(([k, v]) => `${k}: ${typeof v === "string" ? v : JSON.stringify(v)}`).join("; ")}`)
  return out.join("\n")
}

const targetLines = (rs: CaseResult[], w1At: (s: string, n: number, p: number) => number | undefined) => {
  const me = "conductor"
  const lines: string[] = []
  const row = (name: string, value: number | undefined, ok: boolean | undefined, digits = 2) =>
    lines.push(`| ${name} | ${fmt(value, digits)} | ${ok === undefined ? "–" : ok ? "yes" : "**no**"} |`)
  for (const r of rs.filter((r) => r.workload === "w1" && r.system === me)) {
    const { n, processes } = r.params as { n: number; processes: number }
    const mine = r.median.drainPerSec
    const gw = w1At("graphile-worker", n, processes)
    const sql = w1At("sql-baseline", n, processes)
    if (gw && mine) row(`W1 n=${n} procs=${processes}: x graphile-worker (>= 1.5)`, mine / gw, mine / gw >= 1.5)
    if (sql && mine) row(`W1 n=${n} procs=${processes}: x sql-baseline (>= 0.9)`, mine / sql, mine / sql >= 0.9)
  }
  const w2 = rs.find((r) => r.workload === "w2" && r.system === me)?.median
  if (w2) {
    row("W2 p50 ms (<= 2)", w2.p50, w2.p50! <= 2)
    row("W2 p99 ms (<= 5)", w2.p99, w2.p99! <= 5)
  }
  // What any system that commits the invocation and wakes by NOTIFY waits at least.
  const floor = rs.find((r) => r.workload === "w2" && r.system === "notify-floor")?.median
  if (floor) {
    row("(W2 floor: notify-floor p50 ms)", floor.p50, undefined)
    row("(W2 floor: notify-floor p99 ms)", floor.p99, undefined)
  }
  const w3 = rs.find((r) => r.workload === "w3" && r.system === me)?.median
  const dbosW3 = rs.find((r) => r.workload === "w3" && r.system === "dbos")?.median
  if (w3 && dbosW3) row("W3 steps/s x DBOS (>= 10)", w3.stepsPerSec! / dbosW3.stepsPerSec!, w3.stepsPerSec! / dbosW3.stepsPerSec! >= 10)
  if (w3) row("W3 steps/s (>= 10,000)", w3.stepsPerSec, w3.stepsPerSec! >= 10_000, 0)
  const w4 = rs.find((r) => r.workload === "w4" && r.system === me)?.median
  if (w4) {
    const a = w1At(me, W4.drain, 1) ?? w1At(me, W1_SIZES[W1_SIZES.length - 1]!, 1)
    const b = w1At(me, W4.runnable, 1) ?? w1At(me, W1_SIZES[0]!, 1)
    if (a) row("W4 1M runnable: x W1 (>= 0.8)", w4.backlogDrainPerSec! / a, w4.backlogDrainPerSec! / a >= 0.8)
    if (b) row("W4 1M sleeping: x W1 (>= 0.8)", w4.sleepingDrainPerSec! / b, w4.sleepingDrainPerSec! / b >= 0.8)
  }
  const w5 = rs.find((r) => r.workload === "w5" && r.system === me)?.median
  if (w5) row("W5 peak RSS MB (< 150)", w5.peakRssMB, w5.peakRssMB! < 150, 0)
  return lines
}

main()
  .catch((e) => {
    log(`fatal: ${e instanceof Error ? (e.stack ?? e.message) : e}`)
    process.exitCode = 1
  })
  .finally(async () => {
    await cleanup()
    // some peers' clients keep timers or sockets alive after close; the run is over
    process.exit()
  })
