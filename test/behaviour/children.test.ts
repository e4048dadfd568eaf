/**
 * Child executions and cancellation shared by both backends.
 */
import { assert, layer } from "@effect/vitest"
import { Deferred, Effect, Layer, Schema } from "effect"
import { Conductor } from "../../src/Conductor.ts"
import * as Durable from "../../src/Durable.ts"
import * as Task from "../../src/Task.ts"
import { backends, unique, withWorker } from "../support/backends.ts"

class ChildRejected extends Schema.TaggedError<ChildRejected>()("ChildRejected", { reason: Schema.String }) {}

for (const backend of backends) {
  layer(backend.layer, { excludeTestServices: backend.excludeTestServices })(backend.name, (it) => {
    it.effect("a child's result returns to its parent; a failing child's typed error reaches the parent", () =>
      Effect.gen(function*() {
        const queue = unique("q")
        const Double = Task.make(unique("double"), { queue, payload: Schema.Struct({ value: Schema.Number }), success: Schema.Number })
        const Refuse = Task.make(unique("refuse"), {
          queue,
          payload: Schema.Struct({ why: Schema.String }),
          error: ChildRejected,
          maxAttempts: 1
        })
        const Parent = Task.make(unique("parent"), { queue, payload: Schema.Struct({ value: Schema.Number }), success: Schema.Number })
        const Careful = Task.make(unique("careful"), { queue, payload: Schema.Struct({}), success: Schema.String })
        const Strict = Task.make(unique("strict"), { queue, payload: Schema.Struct({}), error: ChildRejected, maxAttempts: 1 })
        const handlers = Layer.mergeAll(
          Double.toLayer(({ value }) => Effect.succeed(value * 2)),
          Refuse.toLayer(({ why }) => Effect.fail(new ChildRejected({ reason: why }))),
          Parent.toLayer(({ value }) => Effect.map(Effect.orDie(Durable.invoke("double", Double, { value })), (n) => n + 10)),
          Careful.toLayer(() =>
            Durable.invoke("refuse", Refuse, { why: "no" }).pipe(
              Effect.as("accepted"),
              Effect.catchTag("ChildRejected", (e) => Effect.succeed(`caught ChildRejected: ${e.reason}`)),
              Effect.orDie
            )
          ),
          Strict.toLayer(() =>
            Durable.invoke("refuse", Refuse, { why: "never" }).pipe(
              Effect.catchTags({ ExecutionFailed: Effect.die, ExecutionCancelled: Effect.die, ChildTimedOut: Effect.die })
            )
          )
        )
        const conductor = yield* Conductor
        const [doubled, caught, strict] = yield* withWorker(
          handlers,
          { queue },
          backend.settle(Effect.gen(function*() {
            const parent = yield* conductor.invoke(Parent, { value: 16 })
            const careful = yield* conductor.invoke(Careful, {})
            const strict = yield* conductor.invoke(Strict, {})
            return [
              yield* conductor.result(Parent, parent),
              yield* conductor.result(Careful, careful),
              yield* Effect.flip(conductor.result(Strict, strict))
            ] as const
          }))
        )
        assert.strictEqual(doubled, 42)
        assert.strictEqual(caught, "caught ChildRejected: no")
        assert.instanceOf(strict, ChildRejected, "the child's typed error, as the parent's own typed failure")
        if (strict instanceof ChildRejected) assert.strictEqual(strict.reason, "never")
      }))

    it.effect("concurrent child invokes with Effect.all: each child's result, in order, even when they finish at different times", () =>
      Effect.gen(function*() {
        const queue = unique("q")
        const Child = Task.make(unique("child"), {
          queue,
          payload: Schema.Struct({ value: Schema.Number, napMillis: Schema.Number }),
          success: Schema.Number
        })
        const Fan = Task.make(unique("fan"), { queue, payload: Schema.Struct({}), success: Schema.Array(Schema.Number) })
        let fanRuns = 0
        const handlers = Layer.mergeAll(
          Child.toLayer(({ napMillis, value }) =>
            Effect.gen(function*() {
              if (napMillis > 0) yield* Durable.sleep("nap", `${napMillis} millis`)
              return value * 2
            })
          ),
          Fan.toLayer(() =>
            Effect.suspend(() => {
              fanRuns++
              return Effect.all(
                [1, 2, 3, 4].map((value) =>
                  Durable.invoke(`child-${value}`, Child, { value, napMillis: value === 2 ? 200 : value === 4 ? 100 : 0 })
                ),
                { concurrency: 4 }
              ).pipe(Effect.orDie)
            })
          )
        )
        const conductor = yield* Conductor
        const id = yield* conductor.invoke(Fan, {})
        const result = yield* withWorker(handlers, { queue, inlineSleep: 0 }, backend.settle(conductor.result(Fan, id)))
        assert.deepStrictEqual(result, [2, 4, 6, 8])
        const info = yield* conductor.get(id)
        assert.strictEqual(info.children.length, 4, "each child started once")
        assert.deepStrictEqual(info.children.map((c) => c.status), ["completed", "completed", "completed", "completed"])
        assert.deepStrictEqual(info.steps.map((s) => s.name).sort(), ["child-1", "child-2", "child-3", "child-4"])
        assert.strictEqual(info.attempts, 1, "suspensions gave their attempts back")
        assert.isAtLeast(fanRuns, 2)
      }))

    it.effect("cancelling a running handler interrupts it (finalizers run) and cascades to its children", () =>
      Effect.gen(function*() {
        const queue = unique("q")
        const parentStarted = yield* Deferred.make<void>()
        const childStarted = yield* Deferred.make<void>()
        const parentFinalized = yield* Deferred.make<void>()
        const childFinalized = yield* Deferred.make<void>()
        const Blocker = Task.make(unique("blocker"), { queue, payload: Schema.Struct({}) })
        const Parent = Task.make(unique("holder"), { queue, payload: Schema.Struct({}) })
        const handlers = Layer.mergeAll(
          Blocker.toLayer(() =>
            Deferred.succeed(childStarted, undefined).pipe(
              Effect.andThen(Effect.never),
              Effect.ensuring(Deferred.succeed(childFinalized, undefined))
            )
          ),
          Parent.toLayer(() =>
            Effect.all([
              Effect.orDie(Durable.invoke("child", Blocker, {})),
              // A step in flight keeps the parent running (it cannot suspend).
              Durable.step("hold", Effect.andThen(Deferred.succeed(parentStarted, undefined), Effect.never))
            ], { concurrency: 2 }).pipe(
              Effect.asVoid,
              Effect.ensuring(Deferred.succeed(parentFinalized, undefined))
            )
          )
        )
        const conductor = yield* Conductor
        const id = yield* conductor.invoke(Parent, {})
        const [parentError, childError, childId] = yield* withWorker(
          handlers,
          { queue, concurrency: 4 },
          backend.settle(Effect.gen(function*() {
            yield* Deferred.await(parentStarted)
            yield* Deferred.await(childStarted)
            const running = yield* conductor.get(id)
            assert.strictEqual(running.status, "running")
            const childId = running.children[0]!.id
            assert.strictEqual((yield* conductor.get(childId)).status, "running")
            assert.isTrue(yield* conductor.cancel(id, { reason: "stop it" }))
            const parentError = yield* Effect.flip(conductor.result(Parent, id))
            const childError = yield* Effect.flip(conductor.result(Blocker, childId))
            yield* Deferred.await(parentFinalized)
            yield* Deferred.await(childFinalized)
            return [parentError, childError, childId] as const
          }))
        )
        assert.strictEqual(parentError._tag, "ExecutionCancelled")
        if (parentError._tag === "ExecutionCancelled") assert.strictEqual(parentError.reason, "stop it")
        assert.strictEqual(childError._tag, "ExecutionCancelled")
        if (childError._tag === "ExecutionCancelled") assert.strictEqual(childError.reason, "stop it")
        assert.strictEqual((yield* conductor.get(id)).status, "cancelled")
        assert.strictEqual((yield* conductor.get(childId)).status, "cancelled")
        assert.isFalse(yield* conductor.cancel(id), "already cancelled")
      }))

    it.effect("cancelling a parent that waits on a child cancels both; the child never runs", () =>
      Effect.gen(function*() {
        const queue = unique("q")
        const childQueue = unique("q-nobody")
        const Orphan = Task.make(unique("orphan"), { queue: childQueue, payload: Schema.Struct({}) })
        const Waiter = Task.make(unique("waiter"), { queue, payload: Schema.Struct({}) })
        const conductor = yield* Conductor
        const id = yield* conductor.invoke(Waiter, {})
        // Nobody works the child's queue: the parent suspends, waiting for it.
        yield* withWorker(
          Waiter.toLayer(() => Effect.orDie(Durable.invoke("child", Orphan, {}))),
          { queue },
          backend.settle(Effect.gen(function*() {
            while ((yield* conductor.get(id)).status !== "waiting") yield* backend.advance("10 millis")
          }))
        )
        const waiting = yield* conductor.get(id)
        assert.isUndefined(waiting.runAt, "waiting for a child without a timeout: no due time")
        const childId = waiting.children[0]!.id
        assert.strictEqual((yield* conductor.get(childId)).status, "pending")
        assert.isTrue(yield* conductor.cancel(id, { reason: "give up" }))
        assert.strictEqual((yield* Effect.flip(conductor.result(Waiter, id)))._tag, "ExecutionCancelled")
        const child = yield* conductor.get(childId)
        assert.strictEqual(child.status, "cancelled")
        assert.strictEqual(child.attempts, 0)
      }))

    it.effect("get() shows status, attempts, the recorded steps and the children", () =>
      Effect.gen(function*() {
        const queue = unique("q")
        const Double = Task.make(unique("double"), { queue, payload: Schema.Struct({ value: Schema.Number }), success: Schema.Number })
        const Flow = Task.make(unique("flow"), { queue, payload: Schema.Struct({}), success: Schema.Number })
        const handlers = Layer.mergeAll(
          Double.toLayer(({ value }) => Effect.succeed(value * 2)),
          Flow.toLayer(() =>
            Effect.gen(function*() {
              const loaded = yield* Durable.step("load", Effect.succeed(21))
              const doubled = yield* Effect.orDie(Durable.invoke("double", Double, { value: loaded }))
              yield* Durable.sleep("nap", "50 millis")
              return doubled
            })
          )
        )
        const conductor = yield* Conductor
        const id = yield* conductor.invoke(Flow, {})
        const result = yield* withWorker(handlers, { queue }, backend.settle(conductor.result(Flow, id)))
        assert.strictEqual(result, 42)
        const info = yield* conductor.get(id)
        assert.strictEqual(info.status, "completed")
        assert.strictEqual(info.task, Flow.name)
        assert.strictEqual(info.attempts, 1)
        assert.isDefined(info.finishedAt)
        assert.deepStrictEqual(info.steps.map((s) => [s.name, s.kind, s.outcome]), [
          ["load", "step", "success"],
          ["double", "child", "child"],
          ["nap", "sleep", "sleep"]
        ])
        assert.strictEqual(info.steps[0]!.value, 21)
        assert.strictEqual(info.children.length, 1)
        const child = info.children[0]!
        assert.deepStrictEqual([child.task, child.status, child.step], [Double.name, "completed", "double"])
        assert.strictEqual((info.steps[1]!.value as { id: string }).id, child.id)
        const childInfo = yield* conductor.get(child.id)
        assert.strictEqual(childInfo.parentId, id)
        assert.strictEqual(yield* conductor.result(Double, child.id), 42)
      }))
  })
}
