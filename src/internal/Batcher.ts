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
 *
 * Up to `inFlight` writes run at once. A writer that finds another one idle
 * takes half of what waits and leaves the rest to it, so submitters split
 * into groups that take turns: one group's write is in flight while the
 * other group computes its next items.
 */
export const makeBatcher = <I, O, E>(
  write: (items: ReadonlyArray<I>) => Effect.Effect<ReadonlyArray<O>, E>,
  options: { readonly maxBatch: number; readonly inFlight?: number }
): Effect.Effect<Batcher<I, O, E>, never, Scope.Scope> =>
  Effect.gen(function*() {
    const writers = Math.max(1, options.inFlight ?? 1)
    const waiting: Array<readonly [I, (exit: Exit.Exit<O, E>) => void]> = []
    const wakeups = yield* Queue.sliding<void>(1)
    let idle = writers
    const writer = Effect.gen(function*() {
      while (true) {
        yield* Queue.take(wakeups)
        idle--
        while (waiting.length > 0) {
          // Let the fibers the last batch woke up run first: they usually submit
          // again at once, and should go together rather than one by one.
          yield* Effect.yieldNow
          const share = idle > 0 && waiting.length > 1 ? Math.ceil(waiting.length / 2) : waiting.length
          const batch = waiting.splice(0, Math.min(share, options.maxBatch))
          if (waiting.length > 0 && idle > 0) Queue.offerUnsafe(wakeups, undefined)
          const exit = yield* Effect.exit(write(batch.map(([item]) => item)))
          batch.forEach(([, onDone], i) => {
            onDone(exit._tag === "Success" ? Exit.succeed(exit.value[i] as O) : Exit.failCause(exit.cause))
          })
        }
        idle++
      }
    })
    for (let i = 0; i < writers; i++) yield* Effect.forkScoped(writer)
    return {
      submit: (item: I) =>
        Effect.suspend(() => {
          const deferred = Deferred.makeUnsafe<O, E>()
          waiting.push([item, (exit) => Deferred.doneUnsafe(deferred, exit)] as const)
          if (idle > 0) Queue.offerUnsafe(wakeups, undefined)
          return Deferred.await(deferred)
        })
    }
  })
