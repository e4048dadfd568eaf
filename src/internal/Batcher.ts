import { Deferred, Effect, Exit, Queue } from "effect"
import type { Scope } from "effect"

export interface Batcher<I, O, E> {
  /** Submits an item and waits for its own output once its batch is written. */
  readonly submit: (item: I) => Effect.Effect<O, E>
}

/**
 * Group commit: items submitted while a batch is being written wait and go
 * together in the next one. An idle batcher writes a lone item at once (no
 * timer), so latency stays one round trip and throughput grows with load.
 */
export const makeBatcher = <I, O, E>(
  write: (items: ReadonlyArray<I>) => Effect.Effect<ReadonlyArray<O>, E>,
  options: { readonly maxBatch: number }
): Effect.Effect<Batcher<I, O, E>, never, Scope.Scope> =>
  Effect.gen(function*() {
    const queue = yield* Queue.unbounded<readonly [I, (exit: Exit.Exit<O, E>) => void]>()
    yield* Effect.gen(function*() {
      while (true) {
        // Let the fibers the last batch woke up run first: they usually submit
        // again at once, and should go together rather than one by one.
        yield* Effect.yieldNow
        const batch = yield* Queue.takeBetween(queue, 1, options.maxBatch)
        const exit = yield* Effect.exit(write(batch.map(([item]) => item)))
        batch.forEach(([, onDone], i) => {
          onDone(exit._tag === "Success" ? Exit.succeed(exit.value[i] as O) : Exit.failCause(exit.cause))
        })
      }
    }).pipe(Effect.forkScoped)
    return {
      submit: (item: I) =>
        Effect.suspend(() => {
          const deferred = Deferred.makeUnsafe<O, E>()
          Queue.offerUnsafe(queue, [item, (exit) => Deferred.doneUnsafe(deferred, exit)] as const)
          return Deferred.await(deferred)
        })
    }
  })
