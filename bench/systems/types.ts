// The plug-in interface every benchmarked system implements (issue 5).
//
// The runner (bench/run.ts) owns the Postgres server, creates a fresh database for
// every (system, workload, repeat), repeats each workload BENCH_REPEAT times and
// reports medians. A system only has to run ONE repetition of a workload against the
// database URL it is given and return the numbers below.
//
// Queue-style systems (W1, W2, W4, W5) usually do not implement these methods by
// hand: they describe themselves as a `QueueAdapter` (bench/lib/queue.ts) and get
// w1/w2/w4/w5 from `queueSystem(adapter)`, which handles worker child processes,
// timing, CHECKPOINTs and completion detection uniformly for every system.

import type { SpawnWorker } from "../lib/child.ts"

/** Sizes and knobs of one workload run (already resolved from env vars). */
export interface W1Params {
  /** number of no-op jobs inserted in bulk, then drained */
  readonly n: number
  /** number of worker child processes draining them (1 or 2) */
  readonly processes: number
}
export interface W2Params {
  /** single invocations sent (default 500) */
  readonly count: number
  /** invocations per second (default 100) */
  readonly rate: number
}
export interface W3Params {
  readonly workflows: number // 500
  readonly steps: number // 10 sequential steps per workflow
  readonly inFlight: number // 24 workflows in flight
}
export interface W4Params {
  /** rows in the backlog (1,000,000) */
  readonly backlog: number
  /** W4a: how many of the runnable backlog to drain and time (100,000) */
  readonly drain: number
  /** W4b: runnable jobs drained while `backlog` sleeping ones (due in an hour) exist (20,000) */
  readonly runnable: number
}
export interface W5Params {
  /** jobs drained by one worker process whose peak RSS is reported (100,000) */
  readonly n: number
}

export interface W1Result {
  readonly insertPerSec: number
  readonly drainPerSec: number
  /** ms from "go" to the first handler's start in any worker process: the workers' start-up */
  readonly firstJobMs?: number
  /** jobs/s over the second half of the jobs (from the first progress report counting half of them handled to the drain's end): the rate once warm */
  readonly secondHalfPerSec?: number
  /** peak RSS (MB) of the largest worker process during the run */
  readonly workerPeakRssMB?: number
  /** CPU µs per job during the drain: all worker processes together, and the local Postgres server */
  readonly workerCpuUsPerJob?: number
  /** the part of workerCpuUsPerJob on the workers' main (JavaScript) threads */
  readonly workerMainThreadCpuUsPerJob?: number
  readonly pgCpuUsPerJob?: number
}
export interface W2Result {
  readonly p50: number // ms, enqueue call start -> handler start
  readonly p95: number
  readonly p99: number
  readonly max?: number
  /** ms the producer's enqueue call took (its round trip and the commit the NOTIFY waits for); overlaps the above */
  readonly enqueueP50?: number
  readonly enqueueP99?: number
}
export interface W3Result {
  readonly workflowsPerSec: number
  readonly stepsPerSec: number
  /** committed + rolled back transactions of the run's database / steps (pg_stat_database) */
  readonly xactsPerStep: number
  /** pg_current_wal_lsn() delta over the run / steps (whole cluster; nothing else runs) */
  readonly walBytesPerStep: number
  /** CPU µs per step of the worker process (which also invokes and awaits), and of its main thread */
  readonly workerCpuUsPerStep?: number
  readonly workerMainThreadCpuUsPerStep?: number
}
export interface W4Result {
  /** W4a: drain rate of the first `drain` jobs with `backlog` runnable ones queued */
  readonly backlogDrainPerSec: number
  /** W4b: drain rate of `runnable` jobs with `backlog` sleeping ones present */
  readonly sleepingDrainPerSec: number
  readonly backlogInsertPerSec?: number
  /** worker and Postgres CPU per job during each drain (as in W1) */
  readonly backlogWorkerCpuUsPerJob?: number
  readonly backlogPgCpuUsPerJob?: number
  readonly sleepingWorkerCpuUsPerJob?: number
  readonly sleepingPgCpuUsPerJob?: number
}
export interface W5Result {
  readonly peakRssMB: number
  readonly drainPerSec: number
}

/** What the runner hands to a workload method. */
export interface BenchContext {
  /** URL of a fresh, empty database created for this run (dropped afterwards) */
  readonly dbUrl: string
  /** URL of the server's admin database (for CHECKPOINT and pg_stat_database) */
  readonly adminUrl: string
  /** name of `dbUrl`'s database */
  readonly dbName: string
  /** create one more fresh database (for a workload with two phases); dropped with the run */
  readonly freshDatabase: (label: string) => Promise<string>
  /** the Node 22 binary every process runs on */
  readonly node: string
  /** spawn a worker child process (see bench/lib/child.ts); killed at the end of the run */
  readonly spawnWorker: SpawnWorker
  readonly log: (line: string) => void
}

export interface BenchSystem {
  readonly name: string
  /** false: the runner skips the system (listed as "not implemented") */
  readonly implemented: boolean
  /** exact versions and configuration, printed next to the numbers */
  settings(): Record<string, unknown>
  w1?(ctx: BenchContext, params: W1Params): Promise<W1Result>
  w2?(ctx: BenchContext, params: W2Params): Promise<W2Result>
  w3?(ctx: BenchContext, params: W3Params): Promise<W3Result>
  w4?(ctx: BenchContext, params: W4Params): Promise<W4Result>
  w5?(ctx: BenchContext, params: W5Params): Promise<W5Result>
}
