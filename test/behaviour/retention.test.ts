/**
 * Retention shared by both backends: what a task that keeps no completed
 * executions deletes as it finishes, what it keeps because somebody needs it,
 * and what the workers' sweep deletes once a retention has passed.
 */
import { assert, describe, it as plain, layer } from "@effect/vitest"
import { Deferred, Effect, Exit, Layer, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { Conductor } from "../../src/Conductor.ts"
import * as Durable from "../../src/Durable.ts"
import { Store } from "../../src/internal/Store.ts"
import * as Task from "../../src/Task.ts"
import { backends, unique, withWorker } from "../support/backends.ts"

describe("Task.make retention", () => {
  plain("one duration for all outcomes, or one per outcome; a left-out outcome is kept for good", () => {
    const make = (retention: Task.TaskOptions<any, any, any>["retention"]) =>
      Task.make(unique("t"), { payload: Schema.Struct({}), retention }).retention
    assert.deepStrictEqual(make(undefined), { completedMillis: undefined, failedMillis: undefined })
    assert.deepStrictEqual(make("1 hour"), { completedMillis: 3_600_000, failedMillis: 3_600_000 })
    assert.deepStrictEqual(make(0), { completedMillis: 0, failedMillis: 0 })
    assert.deepStrictEqual(make({ completed: 0 }), { completedMillis: 0, failedMillis: undefined })
    assert.deepStrictEqual(make({ failed: "7 days" }), { completedMillis: undefined, failedMillis: 604_800_000 })
    assert.deepStrictEqual(make("Infinity"), { completedMillis: undefined, failedMillis: undefined })
  })

  plain("a negative or malformed retention is an InvalidConfig at declaration", () => {
    for (const retention of [-1, { completed: -5 }, "soon" as never, { failed: "two days" as never }]) {
      try {
        Task.make(unique("t"), { payload: Schema.Struct({}), retention })
        assert.fail(`accepted ${JSON.stringify(retention)}`)
      } catch (error) {
        assert.strictEqual((error as { _tag?: string })._tag, "InvalidConfig", String(error))
        assert.include(String((error as Error).message), "retention")
      }
    }
  })
})

for (const backend of backends) {
  layer(backend.layer, { excludeTestServices: backend.excludeTestServices })(backend.name, (it) => {
    it.effect("completed: 0 deletes what nobody awaits, with its steps; an awaited result and a child's are still delivered", () =>
      Effect.gen(function*() {
        const queue = unique("q")
        const Keepless = Task.make(unique("keepless"), {
          queue,
          payload: Schema.Struct({ n: Schema.Number }),
          success: Schema.Number,
          retention: { completed: 0 }
        })
        const Parent = Task.make(unique("parent"), { queue, payload: Schema.Struct({}), success: Schema.Number })
        const firstDone = yield* Deferred.make<void>()
        const secondStarted = yield* Deferred.make<void>()
        const release = yield* Deferred.make<void>()
        const handlers = Layer.mergeAll(
          Keepless.toLayer(({ n }) =>
            Effect.gen(function*() {
              const doubled = yield* Durable.step("double", Effect.succeed(n * 2))
              if (n === 1) yield* Deferred.succeed(firstDone, undefined)
              if (n === 2) {
                yield* Deferred.succeed(secondStarted, undefined)
                yield* Deferred.await(release)
              }
              return doubled
            })
          ),
          Parent.toLayer(() => Effect.orDie(Durable.invoke("child", Keepless, { n: 3 })))
        )
        const conductor = yield* Conductor
        const store = yield* Store
        const [first, second, parent, secondResult, parentResult] = yield* withWorker(
          handlers,
          { queue, concurrency: 4 },
          backend.settle(Effect.gen(function*() {
            const first = yield* conductor.invoke(Keepless, { n: 1 })
            const second = yield* conductor.invoke(Keepless, { n: 2 })
            const parent = yield* conductor.invoke(Parent, {})
            yield* Deferred.await(firstDone)
            yield* Deferred.await(secondStarted)
            // Awaited while it runs (the mark is in place once this returns): kept for its waiter.
            yield* store.awaitOutcomes([second])
            yield* Deferred.succeed(release, undefined)
            const secondResult = yield* conductor.result(Keepless, second)
            const parentResult = yield* conductor.result(Parent, parent)
            return [first, second, parent, secondResult, parentResult] as const
          }))
        )
        // The worker has stopped: every outcome is written.
        assert.strictEqual(secondResult, 4)
        assert.strictEqual(parentResult, 6, "the child's result reached its parent")
        const gone = yield* Effect.exit(conductor.get(first))
        assert.isTrue(Exit.isFailure(gone) && Exit.hasFails(gone), "the unawaited execution is gone")
        if (Exit.isFailure(gone)) assert.include(String(gone.cause), "ExecutionNotFound")
        assert.deepStrictEqual(yield* store.steps(first), [], "and its step records with it")
        const kept = yield* conductor.get(second)
        assert.strictEqual(kept.status, "completed")
        assert.deepStrictEqual(kept.steps.map((s) => s.name), ["double"])
        const [child] = (yield* conductor.get(parent)).children
        assert.strictEqual(child?.status, "completed", "a child is kept for its parent")
      }))

    it.effect("a worker records its tasks' retention; its sweep deletes what expired", () =>
      Effect.gen(function*() {
        const queue = unique("q")
        const Hourly = Task.make(unique("hourly"), { queue, payload: Schema.Struct({}), success: Schema.Number, retention: "1 hour" })
        const conductor = yield* Conductor
        const id = yield* withWorker(
          Hourly.toLayer(() => Effect.succeed(7)),
          { queue },
          backend.settle(Effect.gen(function*() {
            const id = yield* conductor.invoke(Hourly, {})
            assert.strictEqual(yield* conductor.result(Hourly, id), 7)
            return id
          }))
        )
        assert.strictEqual((yield* conductor.get(id)).status, "completed")
        if (backend.name === "postgres") {
          // Postgres' clock cannot be moved: the expiry the finish stamped is checked instead.
          const sql = yield* SqlClient.SqlClient
          const [row] = yield* sql.unsafe<{ ahead_ms: number }>(
            `SELECT (extract(epoch FROM expires_at - now()) * 1000)::float8 AS ahead_ms FROM conductor.finished_executions WHERE id = $1`,
            [id]
          )
          assert.isAbove(row!.ahead_ms, 3_500_000)
          assert.isBelow(row!.ahead_ms, 3_600_001)
          return
        }
        // On memory, a worker (of another task's queue too) sweeps once a minute of TestClock time.
        yield* withWorker(Layer.empty, { queue: unique("q") }, Effect.gen(function*() {
          yield* backend.advance("59 minutes")
          assert.strictEqual((yield* conductor.get(id)).status, "completed", "kept within its retention")
          yield* backend.advance("2 minutes")
          const gone = yield* Effect.exit(conductor.get(id))
          assert.isTrue(Exit.isFailure(gone), "deleted by the sweep after its hour")
        }))
      }))
  })
}
