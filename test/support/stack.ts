import { Effect, Layer } from "effect"
import * as Conductor from "../../src/Conductor.ts"
import type { InvalidConfig } from "../../src/Errors.ts"
import type { Registry } from "../../src/internal/Registry.ts"
import type { Store } from "../../src/internal/Store.ts"
import * as PgStore from "../../src/PgStore.ts"
import * as Worker from "../../src/Worker.ts"
import * as TestDatabase from "./TestDatabase.ts"

/** Conductor + the Postgres store on a fresh database of the test server. */
export const pgStack = (options: PgStore.PgStoreOptions = {}) =>
  Conductor.Conductor.layer.pipe(
    Layer.provideMerge(PgStore.layer(options)),
    Layer.provideMerge(TestDatabase.layer)
  )

/**
 * Runs `body` with a worker (and the given handler layers registered first)
 * alive, and its `Worker` service; the worker shuts down when `body` ends.
 */
export const withWorker = <A, E, R, RH = Registry>(
  handlers: Layer.Layer<never, never, RH>,
  options: Worker.WorkerOptions,
  body: Effect.Effect<A, E, R>
): Effect.Effect<A, E | InvalidConfig, Exclude<R, Worker.Worker> | RH | Store | Registry> =>
  Effect.scoped(Effect.gen(function*() {
    const worker = yield* Layer.build(Layer.provide(Worker.Worker.layer(options), handlers))
    return yield* Effect.provideContext(body, worker)
  }))
