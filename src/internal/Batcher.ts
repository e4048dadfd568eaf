import { Deferred, Effect, Exit, Queue } from "effect"
import type { Scope } from "effect"

/** A batcher's two ways in. */
export interface Batcher<I, O, E> {
  /** Submits an item and waits for its own output once its batch is written. */
  readonly submit: (item: I) => Effect.Effect<O, E>
  /** Submits an item without waiting; `onDone` runs when its batch is written (or failed). */
  readonly offer: (item: I, onDone: (exit: Exit.Exit<O, E>) => void) => Effect.Effect<void>
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
        const batch = yield* Queue.takeBetween(queue, 1, options.maxBatch)
        const exit = yield* Effect.exit(write(batch.map(([item]) => item)))
        batch.forEach(([, onDone], i) => {
          onDone(exit._tag === "Success" ? Exit.succeed(exit.value[i] as O) : Exit.failCause(exit.cause))
        })
      }
    }).pipe(Effect.forkScoped)
    const offer = (item: I, onDone: (exit: Exit.Exit<O, E>) => void) =>
      Effect.asVoid(Queue.offer(queue, [item, onDone] as const))
    return {
      offer,
      submit: (item: I) =>
        Effect.flatMap(Deferred.make<O, E>(), (deferred) =>
          Effect.andThen(offer(item, (exit) => Deferred.doneUnsafe(deferred, exit)), Deferred.await(deferred)))
    }
  })
