// What the standalone probes (protocols.ts, inprocess.ts) share: choosing what
// to run, a timestamped log, interleaved rounds, and the JSON they write.
import { mkdirSync, writeFileSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { round } from "./stats.ts"

/** The names in `list` (comma-separated; all of `known` when unset); exits with usage on an unknown one. */
export const chooseNames = (list: string | undefined, known: ReadonlyArray<string>, what: string): Array<string> => {
  const chosen = list ? list.split(",").map((s) => s.trim()) : [...known]
  for (const name of chosen) {
    if (!known.includes(name)) {
      console.error(`unknown ${what} "${name}"; known: ${known.join(", ")}`)
      process.exit(2)
    }
  }
  return chosen
}

/** Logs to stderr with the seconds since it was made. */
export const makeLog = (tag: string) => {
  const t0 = Date.now()
  return (line: string) => process.stderr.write(`[${tag} ${((Date.now() - t0) / 1000).toFixed(1).padStart(6)}s] ${line}\n`)
}

/**
 * Runs every name once per round, the order rotated each round so that none
 * always goes first; logs each run. Returns the runs by name.
 */
export const runRounds = async <R extends object>(
  chosen: ReadonlyArray<string>,
  rounds: number,
  runOne: (name: string, round: number) => Promise<R>,
  log: (line: string) => void
): Promise<Record<string, Array<R>>> => {
  const runs: Record<string, Array<R>> = Object.fromEntries(chosen.map((name) => [name, []]))
  for (let r = 0; r < rounds; r++) {
    const order = chosen.map((_, i) => chosen[(i + r) % chosen.length]!)
    for (const name of order) {
      const run = await runOne(name, r)
      runs[name]!.push(run)
      log(`${name} #${r + 1}: ${JSON.stringify(Object.fromEntries(Object.entries(run).map(([k, v]) => [k, typeof v === "number" ? round(v, 1) : v])))}`)
    }
  }
  return runs
}

/** Writes `data` to `bench/results/<prefix>-<date>.json` and logs where. */
export const writeResults = (prefix: string, data: unknown, log: (line: string) => void) => {
  const dir = fileURLToPath(new URL("../results/", import.meta.url))
  mkdirSync(dir, { recursive: true })
  const file = `${dir}${prefix}-${new Date().toISOString().replace(/[:.]/g, "-")}.json`
  writeFileSync(file, JSON.stringify(data, null, 2))
  log(`wrote ${file}`)
}
