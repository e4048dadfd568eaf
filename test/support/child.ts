import { Deferred, Effect } from "effect"
import { spawn } from "node:child_process"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..")

/** A worker in its own OS process, for crash tests. */
export interface ChildWorker {
  readonly pid: number
  /** Waits until the child printed a line (seen before or after the call). */
  readonly waitFor: (line: string) => Effect.Effect<void>
  readonly kill: (signal: NodeJS.Signals) => Effect.Effect<void>
  /** Resolves with the exit code (or signal) once the process ended. */
  readonly exited: Effect.Effect<string>
}

/**
 * Spawns `node --import tsx test/fixtures/crash-worker.ts <url>` (one process,
 * so SIGKILL kills the worker itself). The child is killed when the scope closes.
 */
export const spawnWorker = (url: string, env: Record<string, string> = {}) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const child = spawn(process.execPath, ["--import", "tsx", "test/fixtures/crash-worker.ts", url], {
        cwd: root,
        env: { ...process.env, CRASH_CHILD: "1", ...env },
        stdio: ["ignore", "pipe", "pipe"]
      })
      const seen = new Set<string>()
      const waiting = new Map<string, Array<() => void>>()
      let buffer = ""
      let stderr = ""
      child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
        buffer += chunk
        let newline: number
        while ((newline = buffer.indexOf("\n")) >= 0) {
          const line = buffer.slice(0, newline)
          buffer = buffer.slice(newline + 1)
          seen.add(line)
          for (const resolve of waiting.get(line) ?? []) resolve()
          waiting.delete(line)
        }
      })
      child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
        stderr += chunk
      })
      const exitedPromise = new Promise<string>((resolve) =>
        child.on("exit", (code, signal) => resolve(signal ?? String(code)))
      )
      const worker: ChildWorker = {
        pid: child.pid!,
        waitFor: (line) =>
          Effect.gen(function*() {
            if (seen.has(line)) return
            const deferred = yield* Deferred.make<void>()
            const list = waiting.get(line) ?? []
            list.push(() => Deferred.doneUnsafe(deferred, Effect.void))
            waiting.set(line, list)
            const exited = Effect.flatMap(Effect.promise(() => exitedPromise), (code) =>
              Effect.die(new Error(`worker exited (${code}) before printing "${line}"\n${stderr}`)))
            yield* Effect.raceFirst(Deferred.await(deferred), exited)
          }),
        kill: (signal) => Effect.sync(() => void child.kill(signal)),
        exited: Effect.promise(() => exitedPromise)
      }
      return { child, worker }
    }),
    ({ child }) => Effect.sync(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
    })
  ).pipe(Effect.map(({ worker }) => worker))
