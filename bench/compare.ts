// Compares this checkout (working tree included) with another revision of the
// library, interleaved, on one Postgres server. Run from the repo root:
//
//   npm run bench:compare -- <revision> [rounds]
//
// The revision is checked out in a temporary git worktree that borrows this
// checkout's node_modules and bench/node_modules (its bench/node_modules/
// effect-conductor points at the worktree), and both are built. Then `run.ts`
// runs `rounds` times (default 4; an odd count is rounded up, so that each
// side goes first as often as the other) on each side, alternating which goes first,
// with BENCH_REPEAT=1 and BENCH_SYSTEMS=conductor unless set; every other
// BENCH_* variable passes through (e.g. BENCH_WORKLOADS=w1 BENCH_W1_SIZES=20000).
// Each side runs its own revision's bench harness. Prints, per case and
// metric, the median of each side and the change, and writes every value to
// results/compare-<date>.json.
import { execFileSync, spawn } from "node:child_process"
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { startServer } from "./lib/pg.ts"
import { median } from "./lib/stats.ts"

const benchDir = path.dirname(fileURLToPath(import.meta.url))
const repoDir = path.dirname(benchDir)
const [revision, roundsArg] = process.argv.slice(2)
if (!revision) {
  console.error("usage: npm run bench:compare -- <revision> [rounds]")
  process.exit(2)
}
const requested = Number(roundsArg ?? 4)
if (!Number.isInteger(requested) || requested < 1) {
  console.error(`rounds must be a positive integer, got ${roundsArg}`)
  process.exit(2)
}

const T0 = Date.now()
const log = (line: string) => process.stderr.write(`[compare ${((Date.now() - T0) / 1000).toFixed(1).padStart(6)}s] ${line}\n`)
// The side that runs second in a round can meet what the first left behind:
// W4's runs each insert two million rows, and in 5 rounds the side that went
// second three times read 10% slower on a drain the change could not touch.
// With an even count each side goes first equally often.
const rounds = requested % 2 === 0 ? requested : requested + 1
if (rounds !== requested) log(`${requested} rounds rounded up to ${rounds}, so that each side goes first as often as the other`)
const git = (...args: string[]) => execFileSync("git", ["-C", repoDir, ...args], { encoding: "utf8" }).trim()
const sh = (cwd: string, cmd: string, args: string[]) => execFileSync(cmd, args, { cwd, stdio: ["ignore", "ignore", "inherit"] })

const oldLabel = git("rev-parse", "--short", revision)
const newLabel = `${git("rev-parse", "--short", "HEAD")}${git("status", "--porcelain", "--untracked-files=no") ? "+changes" : ""}`

/** A worktree of `revision` that uses this checkout's installed packages. */
const makeWorktree = (): string => {
  const dir = path.join(mkdtempSync(path.join(os.tmpdir(), "conductor-compare-")), "repo")
  git("worktree", "add", "--detach", dir, revision)
  symlinkSync(path.join(repoDir, "node_modules"), path.join(dir, "node_modules"))
  const modules = path.join(dir, "bench", "node_modules")
  mkdirSync(modules, { recursive: true })
  for (const entry of readdirSync(path.join(benchDir, "node_modules"))) {
    if (entry === "effect-conductor" || entry === ".package-lock.json") continue
    symlinkSync(path.join(benchDir, "node_modules", entry), path.join(modules, entry))
  }
  symlinkSync("../..", path.join(modules, "effect-conductor"))
  log(`building ${oldLabel} in ${dir}`)
  sh(dir, "npm", ["run", "--silent", "build"])
  sh(path.join(dir, "bench"), path.join(dir, "node_modules", ".bin", "tsc"), ["-p", "tsconfig.build.json"])
  return dir
}

/** One `run.ts` in `bench`; resolves to the JSON report it wrote. */
const runOnce = (bench: string, databaseUrl: string): Promise<any> =>
  new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", "run.ts"], {
      cwd: bench,
      env: {
        ...process.env,
        DATABASE_URL: databaseUrl,
        BENCH_REPEAT: process.env.BENCH_REPEAT ?? "1",
        BENCH_SYSTEMS: process.env.BENCH_SYSTEMS ?? "conductor"
      },
      stdio: ["ignore", "ignore", "pipe"]
    })
    let stderr = ""
    child.stderr.on("data", (chunk) => (stderr += chunk))
    child.on("exit", (code) => {
      const file = /wrote (\S+\.json)/.exec(stderr)?.[1]
      if (code !== 0 || !file) return reject(new Error(`run.ts in ${bench} exited with ${code}:\n${stderr.slice(-2000)}`))
      resolve(JSON.parse(readFileSync(file, "utf8")))
    })
  })

type Side = "old" | "new"
/** case ("system label params") -> metric -> side -> one value per round */
const values = new Map<string, Map<string, Record<Side, number[]>>>()
const collect = (side: Side, report: any) => {
  for (const r of report.results) {
    if (r.error) log(`${side}: ${r.system} ${r.label} failed: ${r.error}`)
    const params = Object.entries(r.params ?? {}).map(([k, v]) => `${k}=${v}`).join(" ")
    const key = r.label.includes("=") || !params ? `${r.system} ${r.label}` : `${r.system} ${r.label} ${params}`
    const metrics = values.get(key) ?? new Map<string, Record<Side, number[]>>()
    values.set(key, metrics)
    for (const [metric, v] of Object.entries(r.median ?? {})) {
      if (typeof v !== "number") continue
      const byside = metrics.get(metric) ?? { old: [], new: [] }
      metrics.set(metric, byside)
      byside[side].push(v)
    }
  }
}

const fmt = (v: number) => Number.isNaN(v) ? "–" : v.toLocaleString("en-US", { maximumFractionDigits: Math.abs(v) < 10 ? 2 : 0 })

const main = async () => {
  const server = await startServer((line) => process.env.BENCH_PG_LOG === "1" && log(line))
  let worktree: string | undefined
  const cleanUp = () => {
    if (worktree && existsSync(worktree)) git("worktree", "remove", "--force", worktree)
    if (worktree) rmSync(path.dirname(worktree), { recursive: true, force: true })
    worktree = undefined
  }
  process.once("SIGINT", () => {
    cleanUp()
    process.exit(130)
  })
  try {
    worktree = makeWorktree()
    const sides: Record<Side, string> = { old: path.join(worktree, "bench"), new: benchDir }
    for (let round = 1; round <= rounds; round++) {
      const order: Side[] = round % 2 === 1 ? ["old", "new"] : ["new", "old"]
      for (const side of order) {
        log(`round ${round}/${rounds}: ${side === "old" ? oldLabel : newLabel}`)
        collect(side, await runOnce(sides[side], server.url))
      }
    }
  } finally {
    cleanUp()
    await server.stop()
  }

  const lines = [
    `### ${oldLabel} vs ${newLabel}: medians of ${rounds} interleaved rounds (load average ${os.loadavg().map((x) => x.toFixed(2)).join(" ")} at the end)`,
    "",
    `| case | metric | ${oldLabel} | ${newLabel} | change |`,
    "|---|---|---:|---:|---:|"
  ]
  for (const [key, metrics] of values) {
    for (const [metric, v] of metrics) {
      const a = median(v.old)
      const b = median(v.new)
      const change = a === 0 || Number.isNaN(a) || Number.isNaN(b) ? "–" : `${b >= a ? "+" : ""}${((100 * (b - a)) / a).toFixed(1)}%`
      lines.push(`| ${key} | ${metric} | ${fmt(a)} | ${fmt(b)} | ${change} |`)
    }
  }
  process.stdout.write(lines.join("\n") + "\n")
  const dir = path.join(benchDir, "results")
  mkdirSync(dir, { recursive: true })
  const file = path.join(dir, `compare-${new Date().toISOString().replace(/[:.]/g, "-")}.json`)
  const raw = Object.fromEntries([...values].map(([key, metrics]) => [key, Object.fromEntries(metrics)]))
  writeFileSync(file, JSON.stringify({ old: oldLabel, new: newLabel, rounds, env: benchEnv(), values: raw }, null, 2))
  log(`wrote ${file}`)
}

const benchEnv = () => Object.fromEntries(Object.entries(process.env).filter(([k]) => k.startsWith("BENCH_")))

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
