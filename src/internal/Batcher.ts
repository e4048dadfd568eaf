import { Deferred, Effect, Queue } from "effect"
import type { Scope } from "effect"

/**
 * Group commit: items submitted while a batch is being written wait and go
 * together in the next one. An idle batcher writes a lone item at once (no
 * timer), so latency stays one round trip and throughput grows with load.
 * `submit` resolves with the item's own output once its batch is written.
 */
export const makeBatcher = <I, O, E>(
  write: (items: ReadonlyArray<I>) => Effect.Effect<ReadonlyArray<O>, E>,
  options: { readonly maxBatch: number }
): Effect.Effect<(item: I) => Effect.Effect<O, E>, never, Scope.Scope> =>
  Effect.gen(function*() {
    const queue = yield* Queue.unbounded<readonly [I, Deferred.Deferred<O, E>]>()
    yield* Effect.gen(function*() {
      while (true) {
        const batch = yield* Queue.takeBetween(queue, 1, options.maxBatch)
        const exit = yield* Effect.exit(write(batch.map(([item]) => item)))
        batch.forEach(([, deferred], i) => {
          Deferred.doneUnsafe(deferred, exit._tag === "Success" ? Effect.succeed(exit.value[i] as O) : Effect.failCause(exit.cause))
        })
      }
    }).pipe(Effect.forkScoped)
    return (item: I) =>
      Effect.flatMap(Deferred.make<O, E>(), (deferred) =>
        Effect.andThen(Queue.offer(queue, [item, deferred] as const), Deferred.await(deferred)))
  })
