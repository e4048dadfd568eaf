/**
 * Group commit (src/internal/Batcher.ts): what waits goes together, each
 * submitter gets its own output, and a failed write fails its whole batch.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Fiber } from "effect"
import { makeBatcher } from "../src/internal/Batcher.ts"

describe("Batcher", () => {
  it.effect("items submitted during a write go together in the next one, each getting its own output", () =>
    Effect.gen(function*() {
      const batches: Array<ReadonlyArray<number>> = []
      const gate = yield* Deferred.make<void>()
      const batcher = yield* makeBatcher(
        (items: ReadonlyArray<number>) =>
          Effect.gen(function*() {
            batches.push(items)
            if (batches.length === 1) yield* Deferred.await(gate)
            return items.map((n) => n * 10)
          }),
        { maxBatch: 100 }
      )
      const first = yield* Effect.forkChild(batcher.submit(1))
      yield* Effect.yieldNow
      yield* Effect.yieldNow
      const rest = yield* Effect.forkChild(Effect.forEach([2, 3, 4], batcher.submit, { concurrency: "unbounded" }))
      yield* Effect.yieldNow
      yield* Deferred.succeed(gate, undefined)
      assert.strictEqual(yield* Fiber.join(first), 10)
      assert.deepStrictEqual(yield* Fiber.join(rest), [20, 30, 40])
      assert.deepStrictEqual(batches, [[1], [2, 3, 4]])
    }).pipe(Effect.scoped))

  it.effect("a failed write fails every item of its batch", () =>
    Effect.gen(function*() {
      const batcher = yield* makeBatcher((_: ReadonlyArray<number>) => Effect.fail("disk full"), { maxBatch: 10 })
      const out = yield* Effect.forEach([1, 2, 3], (n) => Effect.flip(batcher.submit(n)), { concurrency: "unbounded" })
      assert.deepStrictEqual(out, ["disk full", "disk full", "disk full"])
    }).pipe(Effect.scoped))
})
