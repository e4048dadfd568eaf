/**
 * Durable operations on both backends: what a step records (and what it does
 * not), schemas on step values, names, execution info, child timeouts and
 * concurrent children.
 */
import { assert, layer } from "@effect/vitest"
import { Deferred, Effect, Layer, Schema } from "effect"
import { Conductor } from "../../src/Conductor.ts"
import * as Durable from "../../src/Durable.ts"
import * as Task from "../../src/Task.ts"
import { backends, unique, withWorker } from "../support/backends.ts"

class Declined extends Schema.TaggedError<Declined>()("Declined", { code: Schema.Number }) {}
class Glitch extends Schema.TaggedError<Glitch>()("Glitch", {}) {}

for (const backend of backends) {
  layer(backend.layer, { excludeTestServices: backend.excludeTestServices })(backend.name, (it) => {
    it.effect("an undeclared step failure is not recorded: the attempt fails and the step runs again", () =>
      Effect.gen(function*() {
        const queue = unique("q")
        const Flaky = Task.make(unique("flaky-step"), {
          queue,
          payload: Schema.Struct({}),
          success: Schema.Number,
          maxAttempts: 3,
          retry: { base: "10 millis" }
        })
        let bodyRuns = 0
        const FlakyLive = Flaky.toLayer(() =>
          Durable.step(
            "fetch",
            Effect.suspend(() => (++bodyRuns < 3 ? Effect.fail(new Glitch()) : Effect.succeed(bodyRuns))),
            { error: Declined }
          ).pipe(Effect.orDie)
        )
        const conductor = yield* Conductor
        const id = yield* conductor.invoke(Flaky, {})
        assert.strictEqual(yield* withWorker(FlakyLive, { queue }, backend.settle(conductor.result(Flaky, id))), 3)
        const info = yield* conductor.get(id)
        assert.strictEqual(info.attempts, 3)
        assert.deepStrictEqual(info.steps.map((s) => [s.name, s.attempt, s.value]), [["fetch", 3, 3]])
      }))

    it.effect("step values go through their schema: a Date comes back as a Date", () =>
      Effect.gen(function*() {
        const queue = unique("q")
        const Dated = Task.make(unique("dated"), {
          queue,
          payload: Schema.Struct({}),
          success: Schema.Boolean,
          maxAttempts: 2,
          retry: { base: "10 millis" }
        })
        let attempt = 0
        const DatedLive = Dated.toLayer(() =>
          Effect.gen(function*() {
            attempt++
            const when = yield* Durable.step("when", Effect.succeed(new Date("2026-01-02T03:04:05Z")), { success: Schema.Date })
            if (attempt === 1) return yield* Effect.die("retry to replay")
            return when instanceof Date && when.toISOString() === "2026-01-02T03:04:05.000Z"
          })
        )
        const conductor = yield* Conductor
        const id = yield* conductor.invoke(Dated, {})
        assert.isTrue(yield* withWorker(DatedLive, { queue }, backend.settle(conductor.result(Dated, id))))
      }))

    it.effect("a step of void is recorded (as null) and not re-run on replay", () =>
      Effect.gen(function*() {
        const queue = unique("q")
        const Notify = Task.make(unique("notify"), {
          queue,
          payload: Schema.Struct({}),
          success: Schema.Number,
          maxAttempts: 2,
          retry: { base: "10 millis" }
        })
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
        const conductor = yield* Conductor
        const id = yield* conductor.invoke(Notify, {})
        assert.strictEqual(yield* withWorker(NotifyLive, { queue }, backend.settle(conductor.result(Notify, id))), 1)
        assert.deepStrictEqual((yield* conductor.get(id)).steps.map((s) => [s.name, s.value]), [["send", null]])
      }))

    it.effect("reusing a name within one execution is a clear error", () =>
      Effect.gen(function*() {
        const queue = unique("q")
        const Twice = Task.make(unique("twice"), { queue, payload: Schema.Struct({}), maxAttempts: 1 })
        const TwiceLive = Twice.toLayer(() =>
          Effect.gen(function*() {
            yield* Durable.step("same", Effect.succeed(1))
            yield* Durable.step("same", Effect.succeed(2))
          })
        )
        const conductor = yield* Conductor
        const id = yield* conductor.invoke(Twice, {})
        const error = yield* withWorker(TwiceLive, { queue }, backend.settle(Effect.flip(conductor.result(Twice, id))))
        assert.strictEqual(error._tag, "ExecutionFailed")
        assert.match(error.message, /"same" is used twice/)
      }))

    it.effect("execution info: id, task, attempt, parent, and an AbortSignal for non-Effect code", () =>
      Effect.gen(function*() {
        const queue = unique("q")
        const Inner = Task.make(unique("inner"), {
          queue,
          payload: Schema.Struct({}),
          success: Schema.Struct({ parent: Schema.NullOr(Schema.String), attempt: Schema.Number })
        })
        const Outer = Task.make(unique("outer"), {
          queue,
          payload: Schema.Struct({}),
          success: Schema.Struct({ self: Schema.String, parent: Schema.NullOr(Schema.String), attempt: Schema.Number })
        })
        const Sticky = Task.make(unique("sticky"), { queue, payload: Schema.Struct({}), timeout: "50 millis", maxAttempts: 1 })
        const aborted = yield* Deferred.make<void>()
        const Handlers = Layer.mergeAll(
          Inner.toLayer(() => Effect.map(Durable.execution, (e) => ({ parent: e.parentId ?? null, attempt: e.attempt }))),
          Outer.toLayer(() =>
            Effect.gen(function*() {
              const e = yield* Durable.execution
              const inner = yield* Durable.invoke("inner", Inner, {}).pipe(Effect.orDie)
              return { self: e.task === Outer.name ? e.id : "wrong task", ...inner }
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
        const conductor = yield* Conductor
        const id = yield* conductor.invoke(Outer, {})
        const sticky = yield* conductor.invoke(Sticky, {})
        const result = yield* withWorker(Handlers, { queue }, backend.settle(Effect.gen(function*() {
          yield* Effect.flip(conductor.result(Sticky, sticky))
          yield* Deferred.await(aborted)
          return yield* conductor.result(Outer, id)
        })))
        assert.deepStrictEqual(result, { self: id, parent: id, attempt: 1 })
      }))

    it.effect("a child past its timeout is cancelled and the parent gets ChildTimedOut", () =>
      Effect.gen(function*() {
        const queue = unique("q")
        const Slow = Task.make(unique("slow-child"), { queue, payload: Schema.Struct({}), success: Schema.Number })
        const Parent = Task.make(unique("impatient"), { queue, payload: Schema.Struct({}), success: Schema.String })
        const Handlers = Layer.mergeAll(
          Slow.toLayer(() => Effect.never),
          Parent.toLayer(() =>
            Durable.invoke("slow", Slow, {}, { timeout: "300 millis" }).pipe(
              Effect.map(String),
              Effect.catchTag("ChildTimedOut", (e) => Effect.succeed(`timed out: ${e.task === Slow.name}`)),
              Effect.orDie
            )
          )
        )
        const conductor = yield* Conductor
        const id = yield* conductor.invoke(Parent, {})
        assert.strictEqual(
          yield* withWorker(Handlers, { queue }, backend.settle(conductor.result(Parent, id))),
          "timed out: true"
        )
        const info = yield* conductor.get(id)
        assert.deepStrictEqual(info.children.map((c) => c.status), ["cancelled"])
      }))

    it.effect("concurrent invokes start all children and the parent suspends without using attempts", () =>
      Effect.gen(function*() {
        const queue = unique("q")
        const Square = Task.make(unique("sq"), { queue, payload: Schema.Struct({ n: Schema.Number }), success: Schema.Number })
        const Sum = Task.make(unique("sum"), { queue, payload: Schema.Struct({ n: Schema.Number }), success: Schema.Number })
        let sumRuns = 0
        // The children finish only once the parent's first run has suspended (its
        // handler is interrupted then): finished earlier, the parent would read
        // their results at once and never suspend.
        const firstRunSuspended = yield* Deferred.make<void>()
        const Handlers = Layer.mergeAll(
          Square.toLayer(({ n }) => Effect.as(Deferred.await(firstRunSuspended), n * n)),
          Sum.toLayer(({ n }) =>
            Effect.gen(function*() {
              sumRuns++
              const squares = yield* Effect.all(
                Array.from({ length: n }, (_, i) => Durable.invoke(`sq-${i}`, Square, { n: i })),
                { concurrency: "unbounded" }
              )
              return squares.reduce((a, b) => a + b, 0)
            }).pipe(Effect.onInterrupt(() => Deferred.succeed(firstRunSuspended, undefined)), Effect.orDie)
          )
        )
        const conductor = yield* Conductor
        const id = yield* conductor.invoke(Sum, { n: 10 })
        assert.strictEqual(yield* withWorker(Handlers, { queue, concurrency: 10 }, backend.settle(conductor.result(Sum, id))), 285)
        const info = yield* conductor.get(id)
        assert.strictEqual(info.children.length, 10)
        // One run started all ten and suspended; replays follow until all are done.
        assert.isAtLeast(sumRuns, 2)
        assert.isAtMost(sumRuns, 11)
        assert.strictEqual(info.attempts, 1)
      }))
  })
}
