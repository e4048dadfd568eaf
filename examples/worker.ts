/**
 * A worker process: `DATABASE_URL=postgres://... npm run example:worker`.
 * Runs until SIGINT/SIGTERM, then shuts down gracefully (running handlers get
 * their grace period; the rest are released for another worker).
 */
import { NodeRuntime } from "@effect/platform-node"
import { PgClient } from "@effect/sql-pg"
import { Config, Effect, Layer } from "effect"
import { Conductor, PgStore, Worker } from "../src/index.ts"
import { DoubleLive, GreetLive, ProcessNumberLive } from "./handlers.ts"

const Handlers = Layer.mergeAll(GreetLive, DoubleLive, ProcessNumberLive)

const WorkerLive = Worker.Worker.layer({ queue: "default", concurrency: 20 }).pipe(
  Layer.provide(Handlers),
  Layer.provide(Conductor.Conductor.layer),
  Layer.provide(PgStore.layer()),
  Layer.provide(PgClient.layerConfig({ url: Config.Redacted("DATABASE_URL") }))
)

const main = Effect.gen(function*() {
  const worker = yield* Worker.Worker
  yield* Effect.log(`worker ${worker.id} claiming from queue "${worker.queue}"`)
  return yield* Effect.never
})

NodeRuntime.runMain(main.pipe(Effect.provide(WorkerLive)))
