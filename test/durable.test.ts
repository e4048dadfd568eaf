/**
 * Postgres specifics of durable operations: timing of parked sleeps against
 * the database clock, and children started by one statement. The behaviour of
 * steps, sleeps and children on both backends is in test/behaviour/.
 */
import { assert, layer } from "@effect/vitest"
import { Effect, Layer, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { Conductor } from "../src/Conductor.ts"
import * as Durable from "../src/Durable.ts"
import * as Task from "../src/Task.ts"
import { pgStack, withWorker } from "./support/stack.ts"

layer(pgStack(), { excludeTestServices: true })("sleep", (it) => {
  it.effect("a parked sleep resumes on a running worker at most 50 ms late", () =>
    Effect.gen(function*() {
      const conductor = yield* Conductor
      const Sleeper = Task.make("sleeper", { payload: Schema.Struct({}), success: Schema.Number })
      const SleeperLive = Sleeper.toLayer(() =>
        Effect.gen(function*() {
          yield* Durable.sleep("nap", "400 millis")
          return 1
        })
      )
      const id = yield* conductor.invoke(Sleeper, {})
      // inlineSleep 0: every sleep parks the execution in Postgres.
      yield* withWorker(SleeperLive, { inlineSleep: 0, pollInterval: "1 hour" }, conductor.result(Sleeper, id))
      const info = yield* conductor.get(id)
      const nap = info.steps.find((s) => s.name === "nap")!
      const lateness = info.finishedAt!.getTime() - Number(nap.value)
      assert.isAtLeast(lateness, 0)
      assert.isBelow(lateness, 50)
      assert.strictEqual(info.attempts, 1)
    }))

  it.effect("sleepUntil a past time does not wait; an overdue parked sleep fires when a worker starts", () =>
    Effect.gen(function*() {
      const conductor = yield* Conductor
      const Late = Task.make("late", { payload: Schema.Struct({}), success: Schema.String })
      let runs = 0
      const LateLive = Late.toLayer(() =>
        Effect.gen(function*() {
          runs++
          yield* Durable.sleepUntil("past", new Date(Date.now() - 1000))
          yield* Durable.sleep("nap", "300 millis")
          return "woke"
        })
      )
      const id = yield* conductor.invoke(Late, {})
      // First worker parks the sleep and stops before it is due.
      yield* withWorker(LateLive, { inlineSleep: 0 }, Effect.gen(function*() {
        while ((yield* conductor.get(id)).status !== "waiting") yield* Effect.sleep("10 millis")
      }))
      yield* Effect.sleep("400 millis")
      // The next worker finds it overdue and runs it at once (no poll needed).
      const started = Date.now()
      const result = yield* withWorker(LateLive, { pollInterval: "1 hour" }, conductor.result(Late, id))
      assert.strictEqual(result, "woke")
      assert.isBelow(Date.now() - started, 1000)
      assert.strictEqual(runs, 2)
    }))
})

layer(pgStack(), { excludeTestServices: true })("invoke", (it) => {
  it.effect("children invoked concurrently are inserted by one statement", () =>
    Effect.gen(function*() {
      const conductor = yield* Conductor
      const Square = Task.make("sq", { payload: Schema.Struct({ n: Schema.Number }), success: Schema.Number })
      const Sum = Task.make("sum", { payload: Schema.Struct({ n: Schema.Number }), success: Schema.Number })
      const Handlers = Layer.mergeAll(
        Square.toLayer(({ n }) => Effect.succeed(n * n)),
        Sum.toLayer(({ n }) =>
          Effect.gen(function*() {
            const squares = yield* Effect.all(
              Array.from({ length: n }, (_, i) => Durable.invoke(`sq-${i}`, Square, { n: i })),
              { concurrency: "unbounded" }
            )
            return squares.reduce((a, b) => a + b, 0)
          }).pipe(Effect.orDie)
        )
      )
      const id = yield* conductor.invoke(Sum, { n: 10 })
      assert.strictEqual(yield* withWorker(Handlers, { concurrency: 10 }, conductor.result(Sum, id)), 285)
      const info = yield* conductor.get(id)
      assert.strictEqual(info.children.length, 10)
      // All ten were inserted by one statement: they share its transaction's now().
      const sql = yield* SqlClient.SqlClient
      const created = yield* sql<{ n: number }>`SELECT count(DISTINCT created_at)::int AS n FROM conductor.finished_executions WHERE parent_id = ${id}`
      assert.strictEqual(created[0]!.n, 1)
      // Suspension and replay of the parent are checked on both backends in test/behaviour/operations.test.ts.
    }))
})
