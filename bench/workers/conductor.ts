// effect-conductor worker process: the library's Worker layer with a no-op handler.
import { PgClient } from "@effect/sql-pg"
import { Context, Effect, Exit, Layer, Scope } from "effect"
import type { WorkerFactory } from "../lib/worker-host.ts"
import { noop, stack } from "../lib/conductor.ts"
import { Worker } from "effect-conductor"

const factory: WorkerFactory = async ({ dbUrl, options, onJob }) => {
  const { maxConnections, history, ...workerOptions } = options
  const scope = Effect.runSync(Scope.make())
  // Build the client stack now (the pool's connections, migrations check): not
  // timed. The pool opens its connections in the background; wait for them,
  // as graphile-worker's and the hand-written queue's workers open theirs.
  const context = await Effect.runPromise(Layer.buildWithScope(stack(dbUrl, maxConnections, maxConnections), scope))
  const sql = Context.get(context, PgClient.PgClient)
  await Effect.runPromise(
    Effect.all(Array.from({ length: maxConnections }, () => sql.withTransaction(Effect.andThen(sql`select 1`, Effect.sleep("10 millis")))), {
      concurrency: "unbounded",
      discard: true
    })
  )
  const NoopLive = noop(history).toLayer((payload) => Effect.sync(() => onJob(payload)))
  let workerScope: Scope.Closeable | undefined
  let committed: Effect.Effect<number> = Effect.succeed(0)
  return {
    start: async () => {
      workerScope = Effect.runSync(Scope.make())
      const worker = await Effect.runPromise(
        Layer.buildWithScope(Worker.Worker.layer(workerOptions).pipe(Layer.provide(NoopLive)), workerScope).pipe(
          Effect.provideContext(context)
        )
      )
      // Outcomes written back (here, completions): the runner's end of a drain.
      committed = Context.get(worker, Worker.Worker).committed
    },
    committed: () => Effect.runPromise(committed),
    stop: async () => {
      if (workerScope) await Effect.runPromise(Scope.close(workerScope, Exit.void))
      await Effect.runPromise(Scope.close(scope, Exit.void))
    }
  }
}
export default factory
