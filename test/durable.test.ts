/**
 * Durable operations on Postgres: step records, sleeps, child invocations,
 * timeouts, execution info.
 */
import { assert, layer } from "@effect/vitest"
import { Deferred, Effect, Layer, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { Conductor } from "../src/Conductor.ts"
import * as Durable from "../src/Durable.ts"
import * as Task from "../src/Task.ts"
import { pgStack, withWorker } from "./support/stack.ts"

class Declined extends Schema.TaggedError<Declined>()("Declined", { code: Schema.Number }) {}
class Glitch extends Schema.TaggedError<Glitch>()("Glitch", {}) {}

layer(pgStack(), { excludeTestServices: true })("step", (it) => {
  it.effect("a declared failure is recorded and replayed to a handler that caught it", () =>
    Effect.gen(function*() {
      const conductor = yield* Conductor
      const Charge = Task.make("charge", {
        payload: Schema.Struct({}),
        success: Schema.String,
        maxAttempts: 2,
        retry: { base: "10 millis" }
      })
      let bodyRuns = 0
      let attempts = 0
      const ChargeLive = Charge.toLayer(() =>
        Effect.gen(function*() {
          attempts++
          const outcome = yield* Durable.step(
            "charge",
            Effect.suspend(() => (++bodyRuns, Effect.fail(new Declined({ code: 51 })))),
            { error: Declined }
          ).pipe(Effect.catchTag("Declined", (e) => Effect.succeed(`declined ${e.code}`)))
          // Fail the first attempt after the step: the retry must replay the recorded failure.
          if (attempts === 1) return yield* Effect.die("after the step")
          return outcome
        })
      )
      const id = yield* conductor.invoke(Charge, {})
      assert.strictEqual(yield* withWorker(ChargeLive, {}, conductor.result(Charge, id)), "declined 51")
      assert.strictEqual(bodyRuns, 1)
      const info = yield* conductor.get(id)
      assert.deepStrictEqual(info.steps.map((s) => [s.name, s.outcome, s.value]), [["charge", "failure", { _tag: "Declined", code: 51 }]])
    }))

  it.effect("an undeclared failure is not recorded: the attempt fails and the step runs again", () =>
    Effect.gen(function*() {
      const conductor = yield* Conductor
      const Flaky = Task.make("flaky-step", {
        payload: Schema.Struct({}),
        success: Schema.Number,
        maxAttempts: 3,
        retry: { base: "10 millis" }
      })
      let bodyRuns = 0
      const FlakyLive = Flaky.toLayer(() =>
        Durable.step("fetch", Effect.suspend(() => (++bodyRuns < 3 ? Effect.fail(new Glitch()) : Effect.succeed(bodyRuns))), {
          error: Declined
        }).pipe(Effect.orDie)
      )
      const id = yield* conductor.invoke(Flaky, {})
      assert.strictEqual(yield* withWorker(FlakyLive, {}, conductor.result(Flaky, id)), 3)
      const info = yield* conductor.get(id)
      assert.strictEqual(info.attempts, 3)
      assert.deepStrictEqual(info.steps.map((s) => [s.name, s.attempt, s.value]), [["fetch", 3, 3]])
    }))

  it.effect("values go through their schema: a Date comes back as a Date", () =>
    Effect.gen(function*() {
      const conductor = yield* Conductor
      const Dated = Task.make("dated", { payload: Schema.Struct({}), success: Schema.Boolean, maxAttempts: 2, retry: { base: "10 millis" } })
      let attempt = 0
      const DatedLive = Dated.toLayer(() =>
        Effect.gen(function*() {
          attempt++
          const when = yield* Durable.step("when", Effect.succeed(new Date("2026-01-02T03:04:05Z")), { success: Schema.Date })
          if (attempt === 1) return yield* Effect.die("retry to replay")
          return when instanceof Date && when.toISOString() === "2026-01-02T03:04:05.000Z"
        })
      )
      const id = yield* conductor.invoke(Dated, {})
      assert.isTrue(yield* withWorker(DatedLive, {}, conductor.result(Dated, id)))
    }))

  it.effect("a step of void is recorded (as null) and not re-run on replay", () =>
    Effect.gen(function*() {
      const conductor = yield* Conductor
      const Notify = Task.make("notify", { payload: Schema.Struct({}), success: Schema.Number, maxAttempts: 2, retry: { base: "10 millis" } })
      let sent = 0
      let attempts = 0
      const NotifyLive = Notify.toLayer(() =>
        Effect.gen(function*() {
          attempts++
          yield* Durable.step("send", Effect.sync(() => void sent++))
          if (attempts === 1) return yield* Effect.die("retry after sending")
          return sent
        })
      )
      const id = yield* conductor.invoke(Notify, {})
      assert.strictEqual(yield* withWorker(NotifyLive, {}, conductor.result(Notify, id)), 1)
      assert.deepStrictEqual((yield* conductor.get(id)).steps.map((s) => [s.name, s.value]), [["send", null]])
    }))

  it.effect("reusing a name within one execution is a clear error", () =>
    Effect.gen(function*() {
      const conductor = yield* Conductor
      const Twice = Task.make("twice", { payload: Schema.Struct({}), maxAttempts: 1 })
      const TwiceLive = Twice.toLayer(() =>
        Effect.gen(function*() {
          yield* Durable.step("same", Effect.succeed(1))
          yield* Durable.step("same", Effect.succeed(2))
        })
      )
      const id = yield* conductor.invoke(Twice, {})
      const error = yield* withWorker(TwiceLive, {}, Effect.flip(conductor.result(Twice, id)))
      assert.strictEqual(error._tag, "ExecutionFailed")
      assert.match(error.message, /"same" is used twice/)
    }))

  it.effect("execution info: id, task, attempt, parent, and an AbortSignal for non-Effect code", () =>
    Effect.gen(function*() {
      const conductor = yield* Conductor
      const Inner = Task.make("inner", { payload: Schema.Struct({}), success: Schema.Struct({ parent: Schema.NullOr(Schema.String), attempt: Schema.Number }) })
      const Outer = Task.make("outer", { payload: Schema.Struct({}), success: Schema.Struct({ self: Schema.String, parent: Schema.NullOr(Schema.String), attempt: Schema.Number }) })
      const aborted = yield* Deferred.make<void>()
      const Sticky = Task.make("sticky", { payload: Schema.Struct({}), timeout: "50 millis", maxAttempts: 1 })
      const Handlers = Layer.mergeAll(
        Inner.toLayer(() => Effect.map(Durable.execution, (e) => ({ parent: e.parentId ?? null, attempt: e.attempt }))),
        Outer.toLayer(() =>
          Effect.gen(function*() {
            const e = yield* Durable.execution
            const inner = yield* Durable.invoke("inner", Inner, {}).pipe(Effect.orDie)
            return { self: e.task === "outer" ? e.id : "wrong task", ...inner }
          })
        ),
        Sticky.toLayer(() =>
          Effect.gen(function*() {
            const e = yield* Durable.execution
            e.signal.addEventListener("abort", () => Deferred.doneUnsafe(aborted, Effect.void))
            return yield* Effect.never
          })
        )
      )
      const id = yield* conductor.invoke(Outer, {})
      const sticky = yield* conductor.invoke(Sticky, {})
      const result = yield* withWorker(Handlers, {}, Effect.gen(function*() {
        yield* Effect.flip(conductor.result(Sticky, sticky))
        yield* Deferred.await(aborted)
        return yield* conductor.result(Outer, id)
      }))
      assert.deepStrictEqual(result, { self: id, parent: id, attempt: 1 })
    }))
})

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
  it.effect("a child that fails for good surfaces its typed error in the parent", () =>
    Effect.gen(function*() {
      const conductor = yield* Conductor
      const Child = Task.make("picky-child", { payload: Schema.Struct({ n: Schema.Number }), success: Schema.Number, error: Declined, maxAttempts: 1 })
      const Parent = Task.make("picky-parent", { payload: Schema.Struct({}), success: Schema.String })
      const Handlers = Layer.mergeAll(
        Child.toLayer(({ n }) => (n > 1 ? Effect.fail(new Declined({ code: n })) : Effect.succeed(n))),
        Parent.toLayer(() =>
          Effect.gen(function*() {
            const ok = yield* Durable.invoke("one", Child, { n: 1 })
            const failed = yield* Durable.invoke("two", Child, { n: 2 }).pipe(
              Effect.catchTag("Declined", (e) => Effect.succeed(-e.code))
            )
            return `${ok} ${failed}`
          }).pipe(Effect.orDie)
        )
      )
      const id = yield* conductor.invoke(Parent, {})
      assert.strictEqual(yield* withWorker(Handlers, {}, conductor.result(Parent, id)), "1 -2")
    }))

  it.effect("a child past its timeout is cancelled and the parent gets ChildTimedOut", () =>
    Effect.gen(function*() {
      const conductor = yield* Conductor
      const Slow = Task.make("slow-child", { payload: Schema.Struct({}), success: Schema.Number })
      const Parent = Task.make("impatient", { payload: Schema.Struct({}), success: Schema.String })
      const Handlers = Layer.mergeAll(
        Slow.toLayer(() => Effect.never),
        Parent.toLayer(() =>
          Durable.invoke("slow", Slow, {}, { timeout: "300 millis" }).pipe(
            Effect.map(String),
            Effect.catchTag("ChildTimedOut", (e) => Effect.succeed(`timed out: ${e.task}`)),
            Effect.orDie
          )
        )
      )
      const id = yield* conductor.invoke(Parent, {})
      assert.strictEqual(yield* withWorker(Handlers, {}, conductor.result(Parent, id)), "timed out: slow-child")
      const info = yield* conductor.get(id)
      assert.deepStrictEqual(info.children.map((c) => c.status), ["cancelled"])
    }))

  it.effect("concurrent invokes start all children in one go and suspend once", () =>
    Effect.gen(function*() {
      const conductor = yield* Conductor
      const Square = Task.make("sq", { payload: Schema.Struct({ n: Schema.Number }), success: Schema.Number })
      const Sum = Task.make("sum", { payload: Schema.Struct({ n: Schema.Number }), success: Schema.Number })
      let sumRuns = 0
      const Handlers = Layer.mergeAll(
        Square.toLayer(({ n }) => Effect.succeed(n * n)),
        Sum.toLayer(({ n }) =>
          Effect.gen(function*() {
            sumRuns++
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
      // One run that started all ten and suspended, then replays until all are done
      // (a replay that finds some still running suspends again).
      assert.isAtLeast(sumRuns, 2)
      assert.isAtMost(sumRuns, 11)
      assert.strictEqual(info.attempts, 1)
    }))
})
