/**
 * An invoker process: `DATABASE_URL=postgres://... npm run example:invoker`.
 * Invokes tasks, awaits their typed results (a worker must be running), exits.
 */
import { NodeRuntime } from "@effect/platform-node"
import { PgClient } from "@effect/sql-pg"
import { Config, Effect, Layer } from "effect"
import { Conductor, PgStore } from "../src/index.ts"
import { Greet, ProcessNumber } from "./tasks.ts"

const ConductorLive = Conductor.Conductor.layer.pipe(
  Layer.provide(PgStore.layer()),
  Layer.provide(PgClient.layerConfig({ url: Config.Redacted("DATABASE_URL") }))
)

const main = Effect.gen(function*() {
  const conductor = yield* Conductor.Conductor
  const greeting = yield* conductor.invoke(Greet, { name: "world" })
  yield* Effect.log(`greet: ${(yield* conductor.result(Greet, greeting)).greeting}`)
  const workflow = yield* conductor.invoke(ProcessNumber, { input: "21" })
  const result = yield* conductor.result(ProcessNumber, workflow)
  yield* Effect.log(`process-number: ${result.input} -> ${result.output}`)
})

NodeRuntime.runMain(main.pipe(Effect.provide(ConductorLive)))
