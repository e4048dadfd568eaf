// What encoding and decoding a payload costs, cold and warm: the library's JSON
// codec functions (src/internal/codec.ts, with the fast path of
// src/internal/jsonFastPath.ts) against Schema's own parser on the same JSON
// codec. Each measurement runs in a fresh process, as a fresh worker or
// producer would: the first 10k values (cold), then 3 more passes (warm).
// Run from the repo root with `npm run bench:codec`.
//
// Env: BENCH_REPEAT (processes per case, alternated, default 4).
import { execFileSync } from "node:child_process"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { makeLog, writeResults } from "./lib/rounds.ts"
import { median, round } from "./lib/stats.ts"

const N = 10_000
const PASSES = 3
const cases = ["library", "schema"].flatMap((parser) =>
  ["bench decode", "bench encode", "order decode", "order encode"].map((what) => `${what} / ${parser}`)
)

if (process.env.BENCH_CODEC_CHILD !== undefined) {
  const [what, parser] = process.env.BENCH_CODEC_CHILD.split(" / ") as [string, string]
  const [shape, direction] = what.split(" ") as ["bench" | "order", "decode" | "encode"]
  const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)))
  const { Exit, Schema } = await import("effect")
  const codec = await import(path.join(root, "src/internal/codec.ts"))
  const schemas = {
    // W1's payload.
    bench: Schema.Struct({ i: Schema.optional(Schema.Number), t: Schema.optional(Schema.String) }),
    // A payload of an order: a string, a number, an array of strings, an optional nullable string.
    order: Schema.Struct({ id: Schema.String, n: Schema.Number, tags: Schema.Array(Schema.String), note: Schema.optional(Schema.NullOr(Schema.String)) })
  }
  const json = codec.jsonCodec(schemas[shape])
  const value = (i: number) => (shape === "bench" ? { i } : { id: `o-${i}`, n: i, tags: ["a", "b"], ...(i % 2 ? { note: "x" } : {}) })
  // Decoding reads what the store hands back: parsed JSON.
  const inputs = Array.from({ length: N }, (_, i) => (direction === "decode" ? JSON.parse(JSON.stringify(value(i))) : value(i)))
  const run: (input: unknown) => { readonly _tag: string } = parser === "library"
    ? (direction === "decode" ? (input) => codec.decodeJsonExit(json, input) : (input) => codec.encodeJsonExit(json, input))
    : (direction === "decode" ? Schema.decodeUnknownExit(json) : Schema.encodeUnknownExit(json))
  const pass = () => {
    const cpu0 = process.cpuUsage()
    for (const input of inputs) if (!Exit.isSuccess(run(input) as never)) throw new Error(`${what}: a value failed`)
    const cpu = process.cpuUsage(cpu0)
    return (cpu.user + cpu.system) / 1000
  }
  const cold = pass()
  const warm = Array.from({ length: PASSES }, pass)
  process.stdout.write(JSON.stringify({ cold, warm: median(warm) }))
} else {
  const log = makeLog("codec")
  const repeat = Number(process.env.BENCH_REPEAT ?? 4)
  const runs: Record<string, Array<{ cold: number; warm: number }>> = Object.fromEntries(cases.map((c) => [c, []]))
  for (let r = 0; r < repeat; r++) {
    for (const c of r % 2 === 0 ? cases : [...cases].reverse()) {
      const out = execFileSync(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url)], {
        env: { ...process.env, BENCH_CODEC_CHILD: c },
        encoding: "utf8",
        stdio: ["ignore", "pipe", "inherit"]
      })
      runs[c]!.push(JSON.parse(out))
      log(`${c} #${r + 1}: ${out}`)
    }
  }
  const lines = [
    `### ${N.toLocaleString("en-US")} values per pass, a fresh process per measurement, ${repeat} processes per case (CPU ms, medians)`,
    "",
    "| values, direction | library (fast path): first pass | warm | Schema's parser: first pass | warm |",
    "|---|---:|---:|---:|---:|",
    ...["bench decode", "bench encode", "order decode", "order encode"].map((what) => {
      const cell = (parser: string, key: "cold" | "warm") => round(median(runs[`${what} / ${parser}`]!.map((x) => x[key])), 1).toFixed(1)
      return `| ${what} | ${cell("library", "cold")} | ${cell("library", "warm")} | ${cell("schema", "cold")} | ${cell("schema", "warm")} |`
    })
  ]
  console.log(lines.join("\n"))
  writeResults("codec", { n: N, repeat, runs }, log)
}
