// W3 (durable steps) for any system, written once: one worker process runs
// `workflows` workflows of `steps` sequential steps, `inFlight` at a time, when told
// "go", and resolves start() when all are done. Transactions come from
// pg_stat_database of the run's database (read through the admin database, after the
// worker exited so its backends flushed their counters); WAL bytes from
// pg_current_wal_lsn() deltas.
import type { BenchContext, W3Params, W3Result } from "../systems/types.ts"
import type { WorkerModuleSpec } from "./queue.ts"
import { dbCounters, walPosition } from "./pg.ts"
import { cpuMsOf, mainThreadCpuMsOf, nowMs, sleep } from "./stats.ts"

// 500: after 50, about 250 of effect-conductor's 300 TurboFan compilations still fell
// into the timed 500 workflows (`--trace-opt`), which then ran at half the CPU per step.
export const W3_WARMUP = Number(process.env.BENCH_W3_WARMUP ?? 500)

// A backend reports its transaction counters at most once a second, and one that went
// idle up to 10 s later: before that, the warm-up's transactions would still land in
// the timed window's count.
const STATS_SETTLE_MS = 11_000

export const runSteps = async (
  ctx: BenchContext,
  p: W3Params,
  worker: WorkerModuleSpec,
  setup?: (dbUrl: string) => Promise<void>
): Promise<W3Result> => {
  if (setup) await setup(ctx.dbUrl)
  const w = await ctx.spawnWorker({
    ...worker,
    // Every system's worker runs `warmup` untimed workflows before it reports
    // ready, so the timed run measures the steady state, not JIT compilation.
    options: { ...(worker.options as object), ...p, warmup: W3_WARMUP },
    dbUrl: ctx.dbUrl,
    label: "w3"
  })
  await sleep(STATS_SETTLE_MS)
  const before = await dbCounters(ctx.adminUrl, ctx.dbName)
  const cpu0 = cpuMsOf(w.pid)
  const mainCpu0 = mainThreadCpuMsOf(w.pid)
  const t0 = nowMs()
  w.go()
  await w.finished()
  const seconds = (nowMs() - t0) / 1000
  const cpuMs = cpuMsOf(w.pid) - cpu0
  const mainCpuMs = mainThreadCpuMsOf(w.pid) - mainCpu0
  const walAfter = await walPosition(ctx.adminUrl)
  await w.stop()
  await sleep(200)
  const after = await dbCounters(ctx.adminUrl, ctx.dbName)
  const steps = p.workflows * p.steps
  return {
    workflowsPerSec: p.workflows / seconds,
    stepsPerSec: steps / seconds,
    xactsPerStep: (after.xacts - before.xacts) / steps,
    walBytesPerStep: (walAfter - before.wal) / steps,
    workerCpuUsPerStep: (cpuMs * 1000) / steps,
    workerMainThreadCpuUsPerStep: (mainCpuMs * 1000) / steps
  }
}
