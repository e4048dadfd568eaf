import { readdirSync, readFileSync } from "node:fs"

export const median = (xs: ReadonlyArray<number>): number => {
  const s = [...xs].filter((x) => Number.isFinite(x)).sort((a, b) => a - b)
  if (s.length === 0) return NaN
  const m = s.length >> 1
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}

/** nearest-rank percentile, p in [0, 100] */
export const percentile = (xs: ReadonlyArray<number>, p: number): number => {
  const s = [...xs].sort((a, b) => a - b)
  if (s.length === 0) return NaN
  const rank = Math.max(1, Math.ceil((p / 100) * s.length))
  return s[Math.min(rank, s.length) - 1]!
}

export const nowMs = (): number => Number(process.hrtime.bigint()) / 1e6
export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))
export const round = (x: number, digits = 0) => {
  const f = 10 ** digits
  return Math.round(x * f) / f
}

/** CPU time (user + system, ms) a process has used so far, from /proc; NaN where unreadable. */
export const cpuMsOf = (pid: number, file = `/proc/${pid}/stat`): number => {
  try {
    const stat = readFileSync(file, "utf8")
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS
  } catch {
    return NaN
  }
}

/**
 * CPU ms used so far by a process's main thread (its thread id is the process
 * id): the JavaScript thread of a Node process. The rest of `cpuMsOf` is
 * spent on its other threads (V8's compiler and garbage-collector helpers, libuv).
 */
export const mainThreadCpuMsOf = (pid: number): number => cpuMsOf(pid, `/proc/${pid}/task/${pid}/stat`)

/** CPU ms used so far by every local process named `postgres` (0 when the server is not local). */
export const postgresCpuMs = (): number => {
  let total = 0
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue
    try {
      if (readFileSync(`/proc/${entry}/comm`, "utf8").trim() !== "postgres") continue
    } catch {
      continue
    }
    const ms = cpuMsOf(Number(entry))
    if (Number.isFinite(ms)) total += ms
  }
  return total
}
const CLOCK_TICKS = 100
