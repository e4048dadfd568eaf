// The effect-conductor stack as the benchmark uses it: a PgClient pool, the
// Postgres store (schema "conductor"), the client, and optionally a worker.
import { PgClient } from "@effect/sql-pg"
import { Effect, Layer, ManagedRuntime, Redacted, Schema } from "effect"
import { Conductor, PgStore, Task } from "effect-conductor"

/**
 * What the bench's no-op task keeps of its completed executions: `none`
 * (`retention: { completed: 0 }`, deleted as they finish, as graphile-worker
 * and the hand-written queue delete theirs) or `keep` (the library's default:
 * moved to finished_executions for `get` and `result`).
 */
export type History = "none" | "keep"
/** The default of the `conductor` system; BENCH_CONDUCTOR_HISTORY=keep changes it. */
export const defaultHistory: History = process.env.BENCH_CONDUCTOR_HISTORY === "keep" ? "keep" : "none"

/** The no-op task of W1/W2/W4/W5: the payload is the harness's, passed through. */
export const noop = (history: History) =>
  Task.make("noop", {
    payload: Schema.Struct({ i: Schema.optional(Schema.Number), t: Schema.optional(Schema.String) }),
    ...(history === "none" ? { retention: { completed: 0 } } : {})
  })
/** The producers' side: retention only matters to the workers, which finish executions. */
export const Noop = noop(defaultHistory)

/**
 * `minConnections` keeps that many of the pool's connections open from the
 * start (the worker processes open all of theirs before they report ready, as
 * the other systems' workers do).
 */
export const stack = (dbUrl: string, maxConnections = 10, minConnections = 0) =>
  Conductor.Conductor.layer.pipe(
    Layer.provideMerge(PgStore.layer()),
    Layer.provideMerge(PgClient.layer({ url: Redacted.make(dbUrl), maxConnections, minConnections }))
  )

/** A client runtime in this process (migrations applied on first use). */
export const clientRuntime = async (dbUrl: string) => {
  const runtime = ManagedRuntime.make(stack(dbUrl, 2))
  const conductor = await runtime.runPromise(Effect.service(Conductor.Conductor))
  return { runtime, conductor }
}
