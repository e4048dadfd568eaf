/**
 * Runs an example program against Postgres: DATABASE_URL when set, otherwise
 * an embedded server started for the run and removed afterwards. A worker
 * with the examples' handlers runs alongside the program.
 */
import { PgClient } from "@effect/sql-pg"
import { Effect, Layer, Redacted } from "effect"
import { startPostgres } from "../dev/postgres.ts"
import { Conductor, PgStore, Worker } from "../src/index.ts"
import { DoubleLive, GreetLive, ProcessNumberLive } from "./handlers.ts"

export const runLocally = <A, E>(program: Effect.Effect<A, E, Conductor.Conductor>) => {
  const main = Effect.gen(function*() {
    const server = yield* Effect.acquireRelease(
      Effect.promise(() => startPostgres()),
      (s) => Effect.promise(() => s.stop())
    )
    yield* Effect.log(`postgres: ${server.source === "env" ? "DATABASE_URL" : "embedded server"} (${server.url.replace(/\/\/[^@]*@/, "//")})`)
    const Live = Worker.Worker.layer({ concurrency: 8 }).pipe(
      Layer.provide(Layer.mergeAll(GreetLive, DoubleLive, ProcessNumberLive)),
      Layer.provideMerge(Conductor.Conductor.layer),
      Layer.provide(PgStore.layer({ schema: "conductor_examples" })),
      Layer.provide(PgClient.layer({ url: Redacted.make(server.url) }))
    )
    yield* program.pipe(Effect.provide(Live))
  })
  Effect.runPromise(Effect.scoped(main)).then(
    () => process.exit(0),
    (error) => {
      console.error(error)
      process.exit(1)
    }
  )
}
