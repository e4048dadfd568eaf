// Child side of a worker process: loads a worker module and runs the protocol
// described in child.ts. A worker module's default export is a WorkerFactory.
import { pathToFileURL } from "node:url"

export interface WorkerContext {
  readonly dbUrl: string
  readonly options: any
  /**
   * Call at the START of every job's handler with the job's payload. Counts the job
   * and, when the payload has a `t` field (process.hrtime.bigint() of the enqueue, as
   * a string), records enqueue -> handler-start latency. CLOCK_MONOTONIC is shared
   * by all processes of the machine, so stamps compare across processes.
   */
  readonly onJob: (payload: unknown) => void
}

export interface Worker {
  /** begin consuming; queue workers resolve once started, run-to-completion modules resolve with a result */
  start(): Promise<unknown>
  /** stop consuming and release connections */
  stop(): Promise<void>
  /**
   * Optional: jobs whose completion this worker has committed. Workers that
   * say so let the runner see a drain's end without querying the tables.
   */
  committed?(): Promise<number>
}

/** Import modules and warm connections here; do not consume work before start(). */
export type WorkerFactory = (ctx: WorkerContext) => Promise<Worker>

const send = (m: unknown) => process.send?.(m)
let handled = 0
/** process.hrtime.bigint() when the first handler of this process started (CLOCK_MONOTONIC, comparable across processes) */
let firstAt: bigint | undefined
const latencies: number[] = []
let progressTimer: NodeJS.Timeout | undefined
const flush = () => {
  progressTimer = undefined
  send({ type: "progress", handled, firstAt: firstAt?.toString() })
}
const onJob = (payload: unknown) => {
  const now = process.hrtime.bigint()
  firstAt ??= now
  handled++
  const t = (payload as { t?: unknown } | null)?.t
  if (typeof t === "string") latencies.push(Number(now - BigInt(t)) / 1e6)
  progressTimer ??= setTimeout(flush, 5)
}

let worker: Worker | undefined
const fail = (e: unknown) => {
  send({ type: "error", message: e instanceof Error ? (e.stack ?? e.message) : String(e) })
  setTimeout(() => process.exit(1), 100)
}
process.on("uncaughtException", fail)
process.on("unhandledRejection", fail)
process.on("disconnect", () => process.exit(0))

process.on("message", async (m: any) => {
  try {
    if (m.type === "init") {
      const mod = await import(pathToFileURL(m.module).href)
      worker = await (mod.default as WorkerFactory)({ dbUrl: m.dbUrl, options: m.options, onJob })
      send({ type: "ready" })
    } else if (m.type === "go") {
      const result = await worker!.start()
      send({ type: "finished", result: result ?? null })
    } else if (m.type === "committed?") {
      send({ type: "committed", n: worker?.committed ? await worker.committed() : null })
    } else if (m.type === "stop") {
      if (progressTimer) clearTimeout(progressTimer)
      await worker!.stop()
      process.send!(
        { type: "stopped", handled, latenciesMs: latencies, peakRssKb: process.resourceUsage().maxRSS },
        () => process.exit(0)
      )
    }
  } catch (e) {
    fail(e)
  }
})
