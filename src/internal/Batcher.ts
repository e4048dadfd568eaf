import { Deferred, Effect, Exit, Queue } from "effect"
import type { Scope } from "effect"

/** A batcher's two ways in. */
export interface Batcher<I, O, E> {
  /** Submits an item and waits for its own output once its batch is written. */
  readonly submit: (item: I) => Effect.Effect<O, E>
  /** Submits an item without waiting; `onDone` runs when its batch is written (or failed). */
  readonly offerUnsafe: (item: I, onDone: (exit: Exit.Exit<O, E>) => void) => void
}

/**
 * Group commit: items submitted while a batch is being written wait and go
 * together in the next one. An idle batcher writes a lone item at once (no
 * timer), so latency stays one round trip and throughput grows with load.
 */
export const makeBatcher = <I, O, E>(
  write: (items: ReadonlyArray<I>) => Effect.Effect<ReadonlyArray<O>, E>,
  options: {
    readonly maxBatch: number
    /**
     * Batches written at once (default 1). More lets an item that arrives
     * while a batch is in flight go out at once instead of waiting for it:
     * lower latency for callers that wait on each write, at the cost of more,
     * smaller transactions.
     */
    readonly writers?: number | undefined
  }
): Effect.Effect<Batcher<I, O, E>, never, Scope.Scope> =>
  Effect.gen(function*() {
    const queue = yield* Queue.unbounded<readonly [I, (exit: Exit.Exit<O, E>) => void]>()
    const writer = Effect.gen(function*() {
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
    })
    for (let i = 0; i < (options.writers ?? 1); i++) yield* Effect.forkScoped(writer)
    const offerUnsafe = (item: I, onDone: (exit: Exit.Exit<O, E>) => void) => {
      Queue.offerUnsafe(queue, [item, onDone] as const)
    }
    return {
      offerUnsafe,
      submit: (item: I) =>
        Effect.suspend(() => {
          const deferred = Deferred.makeUnsafe<O, E>()
          offerUnsafe(item, (exit) => Deferred.doneUnsafe(deferred, exit))
          return Deferred.await(deferred)
        })
    }
  })
