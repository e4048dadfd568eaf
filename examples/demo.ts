/**
 * `npm run demo`: a worker and a few invocations in one process, on the
 * Postgres at DATABASE_URL or, when unset, on an embedded server started for
 * the demo and removed afterwards. Prints what runs and its results, then exits.
 */
import { PgClient } from "@effect/sql-pg"
import { Effect, Layer, Redacted } from "effect"
import { startPostgres } from "../dev/postgres.ts"
import { Conductor, PgStore, Worker } from "../src/index.ts"
import { DoubleLive, GreetLive, ProcessNumberLive } from "./handlers.ts"
import { Greet, ProcessNumber } from "./tasks.ts"

const program = Effect.gen(function*() {
  const conductor = yield* Conductor.Conductor

  yield* Effect.log("-- plain tasks: invoke, run on the worker, await typed results")
  for (const name of ["Ada", "Grace", ""]) {
    const id = yield* conductor.invoke(Greet, { name })
    yield* Effect.log(`invoked greet(${JSON.stringify(name)}) as ${id}`)
    const outcome = yield* conductor.result(Greet, id).pipe(
      Effect.map((r) => `completed: ${r.greeting}`),
      Effect.catchTag("NameRejected", (e) => Effect.succeed(`failed with NameRejected (${e.reason})`))
    )
    const info = yield* conductor.get(id)
    yield* Effect.log(`  ${outcome} after ${info.attempts} attempt(s)`)
  }

  yield* Effect.log("-- a durable workflow: validate, invoke a child, transform, sleep, save")
  const ids = yield* conductor.invokeMany(ProcessNumber, [{ payload: { input: "16" } }, { payload: { input: "x" } }])
  for (const id of ids) {
    const outcome = yield* conductor.result(ProcessNumber, id).pipe(
      Effect.map((r) => `completed: ${r.input} -> ${r.output} (saved at ${r.savedAt})`),
      Effect.catchTag("NameRejected", (e) => Effect.succeed(`failed with NameRejected (${e.reason})`))
    )
    const info = yield* conductor.get(id)
    yield* Effect.log(`process-number ${id}: ${outcome}`)
    yield* Effect.log(`  steps: ${info.steps.map((s) => `${s.name}=${s.outcome}`).join(", ")}; children: ${info.children.length}`)
  }
})

const main = Effect.gen(function*() {
  const server = yield* Effect.acquireRelease(
    Effect.promise(() => startPostgres({ log: () => {} })),
    (s) => Effect.promise(() => s.stop())
  )
  yield* Effect.log(`postgres: ${server.source === "env" ? "DATABASE_URL" : "embedded server"} (${server.url.replace(/\/\/[^@]*@/, "//")})`)
  const Handlers = Layer.mergeAll(GreetLive, DoubleLive, ProcessNumberLive)
  const Live = Worker.Worker.layer({ concurrency: 8 }).pipe(
    Layer.provide(Handlers),
    Layer.provideMerge(Conductor.Conductor.layer),
    Layer.provide(PgStore.layer({ schema: "conductor_demo" })),
    Layer.provide(PgClient.layer({ url: Redacted.make(server.url) }))
  )
  yield* program.pipe(Effect.provide(Live))
  yield* Effect.log("done")
})

Effect.runPromise(Effect.scoped(main)).then(
  () => process.exit(0),
  (error) => {
    console.error(error)
    process.exit(1)
  }
)
