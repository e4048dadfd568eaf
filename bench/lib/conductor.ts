// The effect-conductor stack as the benchmark uses it: a PgClient pool, the
// Postgres store (schema "conductor"), the client, and optionally a worker.
import { PgClient } from "@effect/sql-pg"
import { Effect, Layer, ManagedRuntime, Redacted, Schema } from "effect"
import { Conductor, PgStore, Task } from "effect-conductor"

/** The no-op task of W1/W2/W4/W5: the payload is the harness's, passed through. */
export const Noop = Task.make("noop", {
  payload: Schema.Struct({ i: Schema.optional(Schema.Number), t: Schema.optional(Schema.String) })
})

export const stack = (dbUrl: string, maxConnections = 10) =>
  Conductor.Conductor.layer.pipe(
    Layer.provideMerge(PgStore.layer()),
    Layer.provideMerge(PgClient.layer({ url: Redacted.make(dbUrl), maxConnections }))
  )

/** A client runtime in this process (migrations applied on first use). */
export const clientRuntime = async (dbUrl: string) => {
  const runtime = ManagedRuntime.make(stack(dbUrl, 2))
  const conductor = await runtime.runPromise(Effect.service(Conductor.Conductor))
  return { runtime, conductor }
}
