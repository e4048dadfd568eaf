// Parent side of a worker child process.
//
// Every worker runs in its own Node process (the same Node 22 binary as the runner),
// so "one worker process" and "two worker processes" are real. The child is
// bench/lib/worker-host.ts, which loads a worker module and speaks this protocol
// over the IPC channel (JSON messages):
//
//   parent -> child  { type: "init", module, dbUrl, options }
//   child  -> parent { type: "ready" }            module imported, connections warm, NOT consuming
//   parent -> child  { type: "go" }               start consuming now (the timed part starts here)
//   child  -> parent { type: "progress", handled, firstAt } coalesced every <= 5 ms while jobs run (firstAt: hrtime of the first handler, as a string)
//   child  -> parent { type: "finished", result }  the module's start() resolved (run-to-completion modules)
//   parent -> child  { type: "committed?" }
//   child  -> parent { type: "committed", n }     jobs whose completion this worker has committed (null: not known)
//   parent -> child  { type: "stop" }
//   child  -> parent { type: "stopped", handled, latenciesMs, peakRssKb }
//   child  -> parent { type: "error", message }
import { fork, type ChildProcess } from "node:child_process"
import { fileURLToPath } from "node:url"

export interface WorkerSpec {
  /** absolute path of the worker module; its default export is a `WorkerFactory` (worker-host.ts) */
  readonly module: string
  readonly dbUrl: string
  /** JSON-serialisable options handed to the factory */
  readonly options?: unknown
  /** extra Node flags for the child, e.g. ["--import", "tsx"] for code that needs tsx */
  readonly execArgv?: ReadonlyArray<string>
  readonly env?: NodeJS.ProcessEnv
  readonly label?: string
}

export interface WorkerReport {
  readonly handled: number
  /** enqueue -> handler start, ms, for payloads that carried a `t` stamp (W2) */
  readonly latenciesMs: ReadonlyArray<number>
  /** process.resourceUsage().maxRSS of the child, in kB (peak over its lifetime) */
  readonly peakRssKb: number
}

export interface WorkerHandle {
  readonly pid: number
  readonly label: string
  /** jobs whose handler ran, as last reported by the child */
  readonly handled: number
  go(): void
  /** `firstAt`: process.hrtime.bigint() when this worker's first handler started, once one has */
  onProgress(listener: (handled: number, firstAt: bigint | undefined) => void): void
  /** jobs whose completion this worker has committed, when the worker module says (see worker-host.ts) */
  committed(): Promise<number | null>
  /** resolves with the value the module's start() resolved with */
  finished(): Promise<unknown>
  stop(): Promise<WorkerReport>
  kill(): Promise<void>
}

export type SpawnWorker = (spec: WorkerSpec) => Promise<WorkerHandle>

// Worker processes run the JavaScript of lib/ and workers/ that `npm run bench`
// compiles to build/ (tsconfig.build.json), so they load no TypeScript stripper.
const HOST = fileURLToPath(new URL("../build/lib/worker-host.js", import.meta.url))

/** The compiled worker module `workers/<name>.ts` (see HOST). */
export const workerModule = (name: string) => fileURLToPath(new URL(`../build/workers/${name}.js`, import.meta.url))

export const makeSpawner = (node: string, onSpawn: (h: WorkerHandle) => void): SpawnWorker => (spec) =>
  new Promise((resolve, reject) => {
    const label = spec.label ?? "worker"
    const child: ChildProcess = fork(HOST, [label], {
      execPath: node,
      // BENCH_NODE_FLAGS (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof") profiles the workers
      execArgv: [...(spec.execArgv ?? []), ...(process.env.BENCH_NODE_FLAGS?.split(" ").filter(Boolean) ?? [])],
      env: { ...process.env, ...spec.env },
      stdio: ["ignore", "inherit", "inherit", "ipc"]
    })
    let handled = 0
    let ready = false
    const progress: Array<(n: number, firstAt: bigint | undefined) => void> = []
    const committedAnswers: Array<(n: number | null) => void> = []
    let onFinished: { resolve: (v: unknown) => void; reject: (e: Error) => void } | undefined
    let finishedValue: { value: unknown } | undefined
    let onStopped: { resolve: (r: WorkerReport) => void; reject: (e: Error) => void } | undefined
    let failure: Error | undefined
    let stopped = false
    const fail = (e: Error) => {
      failure ??= e
      if (!ready) reject(e)
      onFinished?.reject(e)
      onStopped?.reject(e)
    }
    child.on("message", (m: any) => {
      switch (m.type) {
        case "ready":
          ready = true
          resolve(handle)
          break
        case "progress":
          handled = m.handled
          for (const l of progress) l(handled, m.firstAt === undefined ? undefined : BigInt(m.firstAt))
          break
        case "committed":
          committedAnswers.shift()?.(m.n)
          break
        case "finished":
          finishedValue = { value: m.result }
          onFinished?.resolve(m.result)
          break
        case "stopped":
          stopped = true
          handled = m.handled
          onStopped?.resolve({ handled: m.handled, latenciesMs: m.latenciesMs, peakRssKb: m.peakRssKb })
          break
        case "error":
          fail(new Error(`${label} (pid ${child.pid}): ${m.message}`))
          break
      }
    })
    child.on("exit", (code, signal) => {
      fail(new Error(`${label} (pid ${child.pid}) exited (code ${code}, signal ${signal})`))
    })
    const handle: WorkerHandle = {
      pid: child.pid!,
      label,
      get handled() {
        return handled
      },
      go: () => child.send({ type: "go" }),
      onProgress: (l) => void progress.push(l),
      committed: () =>
        new Promise((res) => {
          committedAnswers.push(res)
          child.send({ type: "committed?" })
        }),
      finished: () =>
        finishedValue
          ? Promise.resolve(finishedValue.value)
          : failure
          ? Promise.reject(failure)
          : new Promise((res, rej) => (onFinished = { resolve: res, reject: rej })),
      stop: () =>
        failure
          ? Promise.reject(failure)
          : new Promise((res, rej) => {
              onStopped = { resolve: res, reject: rej }
              child.send({ type: "stop" })
            }),
      kill: async () => {
        const alive = () => child.exitCode === null && child.signalCode === null
        // A child that reported "stopped" is exiting on its own (and may be writing a
        // --cpu-prof profile): give it a few seconds before SIGKILL.
        if (alive() && stopped) await new Promise((res) => { child.once("exit", res); setTimeout(res, 10_000) })
        if (alive()) child.kill("SIGKILL")
      }
    }
    onSpawn(handle)
    child.send({ type: "init", module: spec.module, dbUrl: spec.dbUrl, options: spec.options ?? {} })
  })
