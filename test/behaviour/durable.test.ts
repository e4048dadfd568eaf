/**
 * Durable operations shared by both backends: steps memoized across retries,
 * durable sleeps that suspend and resume without restarting.
 */
import { assert, layer } from "@effect/vitest"
import { Clock, Deferred, Effect, Schema } from "effect"
import { Conductor } from "../../src/Conductor.ts"
import * as Durable from "../../src/Durable.ts"
import * as Task from "../../src/Task.ts"
import { backends, clockSkewMillis, unique, withWorker } from "../support/backends.ts"

const Times = Schema.Struct({ before: Schema.Number, after: Schema.Number })

for (const backend of backends) {
  layer(backend.layer, { excludeTestServices: backend.excludeTestServices })(backend.name, (it) => {
    it.effect("a step's body runs once although the handler fails after it and is retried", () =>
      Effect.gen(function*() {
        const queue = unique("q")
        const Charge = Task.make(unique("charge"), {
          queue,
          payload: Schema.Struct({ amount: Schema.Number }),
          success: Schema.Number,
          maxAttempts: 3,
          retry: { base: "20 millis" }
        })
        let charged = 0
        let handlerRuns = 0
        const conductor = yield* Conductor
        const id = yield* conductor.invoke(Charge, { amount: 5 })
        const result = yield* withWorker(
          Charge.toLayer(({ amount }) =>
            Effect.gen(function*() {
              handlerRuns++
              const receipt = yield* Durable.step("charge", Effect.sync(() => amount * 100 + ++charged))
              const { attempt } = yield* Durable.execution
              if (attempt < 3) return yield* Effect.die(new Error(`crash after the charge (attempt ${attempt})`))
              return receipt
            })
          ),
          { queue },
          backend.settle(conductor.result(Charge, id))
        )
        assert.strictEqual(charged, 1, "the step body ran once")
        assert.strictEqual(handlerRuns, 3)
        assert.strictEqual(result, 501, "the replayed value is the committed one")
        const info = yield* conductor.get(id)
        assert.strictEqual(info.attempts, 3)
        assert.deepStrictEqual(info.steps.map((s) => [s.name, s.outcome, s.value, s.attempt]), [["charge", "success", 501, 1]])
      }))

    it.effect("a durable sleep suspends the execution and resumes it after the deadline, without restarting", () =>
      Effect.gen(function*() {
        const queue = unique("q")
        const Napper = Task.make(unique("napper"), { queue, payload: Schema.Struct({}), success: Times })
        let entries = 0
        const conductor = yield* Conductor
        const id = yield* conductor.invoke(Napper, {})
        const { after, before } = yield* withWorker(
          Napper.toLayer(() =>
            Effect.gen(function*() {
              entries++
              const before = yield* Durable.step("before", Clock.currentTimeMillis)
              yield* Durable.sleep("nap", "250 millis")
              const after = yield* Durable.step("after", Clock.currentTimeMillis)
              return { before, after }
            })
          ),
          // inlineSleep 0: every sleep parks the execution in the store.
          { queue, inlineSleep: 0 },
          backend.settle(conductor.result(Napper, id))
        )
        const skew = clockSkewMillis(backend)
        assert.isAtLeast(after - before, 250 - skew, "resumed after the deadline")
        assert.isBelow(after - before, 500, "the sleep was not restarted on resume")
        assert.strictEqual(entries, 2, "suspended once, resumed once")
        const info = yield* conductor.get(id)
        assert.strictEqual(info.attempts, 1, "suspending gives the attempt back")
        const nap = info.steps.find((s) => s.name === "nap")!
        assert.strictEqual(nap.kind, "sleep")
        assert.isAtLeast(Number(nap.value), before + 250 - skew, "the wake time is recorded")
        assert.isAtMost(Number(nap.value), after + skew)
      }))

    it.effect("a durable sleep outlives its worker: the next worker resumes it without restarting it", () =>
      Effect.gen(function*() {
        const queue = unique("q")
        const Napper = Task.make(unique("napper"), { queue, payload: Schema.Struct({}), success: Times })
        const reachedSleep = yield* Deferred.make<void>()
        let entries = 0
        const handler = Napper.toLayer(() =>
          Effect.gen(function*() {
            entries++
            const before = yield* Durable.step("before", Clock.currentTimeMillis)
            yield* Deferred.succeed(reachedSleep, undefined)
            yield* Durable.sleep("nap", "300 millis")
            const after = yield* Durable.step("after", Clock.currentTimeMillis)
            return { before, after }
          })
        )
        const conductor = yield* Conductor
        const id = yield* conductor.invoke(Napper, {})
        // The first worker stops while the execution sleeps.
        yield* withWorker(handler, { queue, inlineSleep: 0 }, backend.settle(Deferred.await(reachedSleep)))
        const { after, before } = yield* withWorker(handler, { queue, inlineSleep: 0 }, backend.settle(conductor.result(Napper, id)))
        assert.isAtLeast(after - before, 300 - clockSkewMillis(backend))
        assert.isBelow(after - before, 600, "the second worker did not restart the sleep")
        assert.isAtLeast(entries, 2)
        assert.strictEqual((yield* conductor.get(id)).attempts, 1)
      }))

    it.effect("a declared step failure is recorded and replayed to a handler that caught it", () =>
      Effect.gen(function*() {
        class Declined extends Schema.TaggedError<Declined>()("Declined", { code: Schema.Number }) {}
        const queue = unique("q")
        const Pay = Task.make(unique("pay"), {
          queue,
          payload: Schema.Struct({}),
          success: Schema.String,
          maxAttempts: 2,
          retry: { base: "20 millis" }
        })
        let tries = 0
        const conductor = yield* Conductor
        const id = yield* conductor.invoke(Pay, {})
        const result = yield* withWorker(
          Pay.toLayer(() =>
            Effect.gen(function*() {
              const outcome = yield* Durable.step(
                "pay",
                Effect.suspend(() => Effect.fail(new Declined({ code: 400 + ++tries }))),
                { error: Declined }
              ).pipe(Effect.catchTag("Declined", (e) => Effect.succeed(`declined ${e.code}`)))
              const { attempt } = yield* Durable.execution
              if (attempt === 1) return yield* Effect.die(new Error("crash after the declined payment"))
              return outcome
            })
          ),
          { queue },
          backend.settle(conductor.result(Pay, id))
        )
        assert.strictEqual(result, "declined 401")
        assert.strictEqual(tries, 1)
        const step = (yield* conductor.get(id)).steps[0]!
        assert.strictEqual(step.outcome, "failure")
        assert.deepStrictEqual(step.value, { _tag: "Declined", code: 401 })
      }))
  })
}
