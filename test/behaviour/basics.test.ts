/**
 * Task-queue behaviour shared by both backends: results, retries, defects,
 * dedupe, priority, delayed runs and cancelling executions that are not running.
 */
import { assert, layer } from "@effect/vitest"
import { Clock, Context, Deferred, Effect, Exit, Layer, Schema, Scope } from "effect"
import { Conductor } from "../../src/Conductor.ts"
import * as Durable from "../../src/Durable.ts"
import * as Task from "../../src/Task.ts"
import { Worker } from "../../src/Worker.ts"
import { backends, clockSkewMillis, unique, withWorker } from "../support/backends.ts"

class Rejected extends Schema.TaggedError<Rejected>()("Rejected", { reason: Schema.String }) {}

for (const backend of backends) {
  layer(backend.layer, { excludeTestServices: backend.excludeTestServices })(backend.name, (it) => {
    it.effect("invoke → result: the typed success", () =>
      Effect.gen(function*() {
        const queue = unique("q")
        const Echo = Task.make(unique("echo"), {
          queue,
          payload: Schema.Struct({ text: Schema.String }),
          success: Schema.Struct({ upper: Schema.String, length: Schema.Number })
        })
        const conductor = yield* Conductor
        const result = yield* withWorker(
          Echo.toLayer(({ text }) => Effect.succeed({ upper: text.toUpperCase(), length: text.length })),
          { queue },
          backend.settle(Effect.flatMap(conductor.invoke(Echo, { text: "hello" }), (id) => conductor.result(Echo, id)))
        )
        assert.deepStrictEqual(result, { upper: "HELLO", length: 5 })
      }))

    it.effect("a typed failure is retried with backoff until maxAttempts, then reported with its type", () =>
      Effect.gen(function*() {
        const queue = unique("q")
        const Flaky = Task.make(unique("flaky"), {
          queue,
          payload: Schema.Struct({}),
          error: Rejected,
          maxAttempts: 3,
          retry: { backoff: "exponential", base: "40 millis", jitter: false }
        })
        const runs: Array<number> = []
        const conductor = yield* Conductor
        const id = yield* conductor.invoke(Flaky, {})
        const error = yield* withWorker(
          Flaky.toLayer(() =>
            Effect.gen(function*() {
              runs.push(yield* Clock.currentTimeMillis)
              const { attempt } = yield* Durable.execution
              return yield* new Rejected({ reason: `attempt ${attempt}` })
            })
          ),
          { queue },
          backend.settle(Effect.flip(conductor.result(Flaky, id)))
        )
        assert.instanceOf(error, Rejected)
        assert.strictEqual((error as Rejected).reason, "attempt 3")
        assert.strictEqual(runs.length, 3, "maxAttempts counts the first run")
        assert.isAtLeast(runs[1]! - runs[0]!, 40, "first backoff: base")
        assert.isAtLeast(runs[2]! - runs[1]!, 80, "second backoff: doubled")
        const info = yield* conductor.get(id)
        assert.strictEqual(info.status, "failed")
        assert.strictEqual(info.attempts, 3)
        assert.deepStrictEqual(info.lastError, { _tag: "Typed", value: { _tag: "Rejected", reason: "attempt 3" } })
      }))

    it.effect("a defect fails the execution with ExecutionFailed after its attempts", () =>
      Effect.gen(function*() {
        const queue = unique("q")
        const Crashy = Task.make(unique("crashy"), {
          queue,
          payload: Schema.Struct({}),
          success: Schema.Number,
          maxAttempts: 2,
          retry: { base: "20 millis" }
        })
        let runs = 0
        const conductor = yield* Conductor
        const id = yield* conductor.invoke(Crashy, {})
        const error = yield* withWorker(
          Crashy.toLayer(() => Effect.suspend(() => Effect.die(new Error(`kaboom ${++runs}`)))),
          { queue },
          backend.settle(Effect.flip(conductor.result(Crashy, id)))
        )
        assert.strictEqual(error._tag, "ExecutionFailed")
        if (error._tag !== "ExecutionFailed") return
        assert.strictEqual(error.attempts, 2)
        assert.include(error.message, "kaboom 2")
        assert.strictEqual(runs, 2)
      }))

    it.effect("a handler that throws instead of returning an effect fails its attempt as a defect, and frees its slot", () =>
      Effect.gen(function*() {
        const queue = unique("q")
        const Careless = Task.make(unique("careless"), {
          queue,
          payload: Schema.Struct({ ok: Schema.Boolean }),
          success: Schema.Number,
          maxAttempts: 1
        })
        const conductor = yield* Conductor
        const [error, fine] = yield* withWorker(
          Careless.toLayer(({ ok }) => {
            if (!ok) throw new Error("thrown while building the effect")
            return Effect.succeed(1)
          }),
          // One slot: the second execution runs only once the first has given it back.
          { queue, concurrency: 1 },
          backend.settle(Effect.gen(function*() {
            const thrown = yield* conductor.invoke(Careless, { ok: false })
            const after = yield* conductor.invoke(Careless, { ok: true })
            return [yield* Effect.flip(conductor.result(Careless, thrown)), yield* conductor.result(Careless, after)] as const
          }))
        )
        assert.strictEqual(error._tag, "ExecutionFailed")
        assert.include(error.message, "thrown while building the effect")
        assert.strictEqual(fine, 1)
      }))

    it.effect("dedupe: a second invoke while unfinished returns the same id; after it finished, a new one", () =>
      Effect.gen(function*() {
        const queue = unique("q")
        const Once = Task.make(unique("once"), { queue, payload: Schema.Struct({ n: Schema.Number }), success: Schema.Number })
        const conductor = yield* Conductor
        // No worker yet: the first stays pending.
        const first = yield* conductor.invoke(Once, { n: 1 }, { dedupeKey: "k" })
        const again = yield* conductor.invoke(Once, { n: 2 }, { dedupeKey: "k" })
        const other = yield* conductor.invoke(Once, { n: 3 }, { dedupeKey: "other" })
        assert.strictEqual(again, first)
        assert.notStrictEqual(other, first)
        const [r1, later, r2] = yield* withWorker(
          Once.toLayer(({ n }) => Effect.succeed(n * 10)),
          { queue },
          backend.settle(Effect.gen(function*() {
            const r1 = yield* conductor.result(Once, first)
            const later = yield* conductor.invoke(Once, { n: 4 }, { dedupeKey: "k" })
            return [r1, later, yield* conductor.result(Once, later)] as const
          }))
        )
        assert.strictEqual(r1, 10, "the first payload wins")
        assert.notStrictEqual(later, first, "the key is free once the execution finished")
        assert.strictEqual(r2, 40)
      }))

    it.effect("dedupe inside one invokeMany: repeated keys get the first one's id", () =>
      Effect.gen(function*() {
        const queue = unique("q")
        const Once = Task.make(unique("once-many"), { queue, payload: Schema.Struct({ n: Schema.Number }), success: Schema.Number })
        const conductor = yield* Conductor
        const ids = yield* conductor.invokeMany(Once, [
          { payload: { n: 1 }, options: { dedupeKey: "k" } },
          { payload: { n: 2 }, options: { dedupeKey: "k" } },
          { payload: { n: 3 } }
        ])
        assert.strictEqual(ids[1], ids[0])
        assert.notStrictEqual(ids[2], ids[0])
        const results = yield* withWorker(
          Once.toLayer(({ n }) => Effect.succeed(n)),
          { queue },
          backend.settle(Effect.forEach(ids, (id) => conductor.result(Once, id)))
        )
        assert.deepStrictEqual(results, [1, 1, 3])
      }))

    it.effect("priority: higher first, then first invoked first (concurrency 1)", () =>
      Effect.gen(function*() {
        const queue = unique("q")
        const Job = Task.make(unique("job"), { queue, payload: Schema.Struct({ name: Schema.String }) })
        const order: Array<string> = []
        const conductor = yield* Conductor
        const ids = [
          yield* conductor.invoke(Job, { name: "low-1" }),
          yield* conductor.invoke(Job, { name: "high" }, { priority: 10 }),
          yield* conductor.invoke(Job, { name: "low-2" }),
          yield* conductor.invoke(Job, { name: "mid" }, { priority: 5 }),
          yield* conductor.invoke(Job, { name: "negative" }, { priority: -1 })
        ]
        // Nothing awaits results while the worker claims: marking a row awaited
        // locks it for a moment, and a claim skips locked rows (SKIP LOCKED),
        // which can take a later row first.
        const ranAll = yield* Deferred.make<void>()
        yield* withWorker(
          Job.toLayer(({ name }) =>
            Effect.suspend(() => order.push(name) === ids.length ? Deferred.done(ranAll, Exit.void) : Effect.void)
          ),
          { queue, concurrency: 1 },
          backend.settle(Deferred.await(ranAll))
        )
        assert.deepStrictEqual(order, ["high", "mid", "low-1", "low-2", "negative"])
      }))

    it.effect("Worker.running, held and committed: what runs, what is leased, what was written back", () =>
      Effect.gen(function*() {
        const queue = unique("q")
        const Gated = Task.make(unique("gated"), { queue, payload: Schema.Struct({ i: Schema.Number }) })
        const conductor = yield* Conductor
        yield* conductor.invokeMany(Gated, [0, 1, 2].map((i) => ({ payload: { i } })))
        let started = 0
        const twoStarted = yield* Deferred.make<void>()
        const open = yield* Deferred.make<void>()
        const handlers = Gated.toLayer(() =>
          Effect.andThen(
            Effect.suspend(() => ++started === 2 ? Deferred.done(twoStarted, Exit.void) : Effect.void),
            Deferred.await(open)
          )
        )
        const scope = yield* Scope.make()
        // concurrency 2, prefetch 1: two run and one waits in the buffer (a
        // first claim for the two free slots, then one for the buffer)
        const context = yield* Layer.buildWithScope(
          Layer.provide(Worker.layer({ queue, concurrency: 2, prefetch: 1, shutdownGrace: "5 seconds" }), handlers),
          scope
        )
        const worker = Context.get(context, Worker)
        yield* backend.settle(Deferred.await(twoStarted))
        yield* backend.settle(Effect.gen(function*() {
          while ((yield* worker.held) < 3) yield* Effect.sleep("5 millis")
        }))
        assert.deepStrictEqual(
          [yield* worker.running, yield* worker.held, yield* worker.committed],
          [2, 3, 0]
        )
        yield* Deferred.done(open, Exit.void)
        // The buffered one ran once a slot was free, or was given back at
        // shutdown: either way, three attempts ended and were written back.
        yield* backend.settle(Scope.close(scope, Exit.void))
        assert.deepStrictEqual(
          [yield* worker.running, yield* worker.held, yield* worker.committed],
          [0, 0, 3]
        )
      }))

    it.effect("a claim of thousands whose handlers end at once: every one runs and is written back", () =>
      Effect.gen(function*() {
        // Each handler that ends at once starts the next from its own fiber,
        // synchronously: a batch this size once ran as one chain of nested
        // calls, overflowed the stack and left the worker stuck.
        const queue = unique("q")
        const n = 5000
        const Quick = Task.make(unique("quick"), { queue, payload: Schema.Struct({ i: Schema.Number }) })
        const conductor = yield* Conductor
        yield* conductor.invokeMany(Quick, Array.from({ length: n }, (_, i) => ({ payload: { i } })))
        let ran = 0
        const allRan = yield* Deferred.make<void>()
        const handlers = Quick.toLayer(() => Effect.suspend(() => ++ran === n ? Deferred.done(allRan, Exit.void) : Effect.void))
        const scope = yield* Scope.make()
        const context = yield* Layer.buildWithScope(
          Layer.provide(
            Worker.layer({ queue, concurrency: 4, prefetch: n - 4, claimBatch: n, shutdownGrace: "1 second" }),
            handlers
          ),
          scope
        )
        const worker = Context.get(context, Worker)
        const waited = yield* backend.settle(Effect.exit(Effect.timeout(Deferred.await(allRan), "10 seconds")))
        yield* backend.settle(Scope.close(scope, Exit.void))
        assert.isTrue(Exit.isSuccess(waited), `every handler ran (${ran} of ${n} did)`)
        assert.strictEqual(ran, n)
        assert.strictEqual(yield* worker.committed, n)
      }))

    it.effect("delay and runAt: not run early, run after", () =>
      Effect.gen(function*() {
        const queue = unique("q")
        const Later = Task.make(unique("later"), { queue, payload: Schema.Struct({}), success: Schema.Number })
        const conductor = yield* Conductor
        const t0 = yield* Clock.currentTimeMillis
        const delayed = yield* conductor.invoke(Later, {}, { delay: "300 millis" })
        const at = yield* conductor.invoke(Later, {}, { runAt: t0 + 300 })
        let runs = 0
        yield* withWorker(
          Later.toLayer(() => Effect.sync(() => ++runs)),
          { queue },
          Effect.gen(function*() {
            yield* backend.advance("100 millis")
            assert.strictEqual(runs, 0, "nothing ran before its time")
            assert.strictEqual((yield* conductor.get(delayed)).status, "scheduled")
            assert.strictEqual((yield* conductor.get(at)).status, "scheduled")
            yield* backend.settle(Effect.all([conductor.result(Later, delayed), conductor.result(Later, at)]))
          })
        )
        assert.strictEqual(runs, 2)
        // Both on the store's clock.
        const delayedInfo = yield* conductor.get(delayed)
        assert.strictEqual(delayedInfo.status, "completed")
        assert.isAtLeast(delayedInfo.startedAt!.getTime() - delayedInfo.createdAt.getTime(), 300)
        // runAt was read from the test's clock.
        const atInfo = yield* conductor.get(at)
        assert.strictEqual(atInfo.status, "completed")
        assert.isAtLeast(atInfo.startedAt!.getTime() - t0, 300 - clockSkewMillis(backend))
      }))

    it.effect("cancel: a pending or scheduled execution ends cancelled; cancelling a finished one returns false", () =>
      Effect.gen(function*() {
        const queue = unique("q")
        const Quick = Task.make(unique("quick"), { queue, payload: Schema.Struct({}), success: Schema.String })
        const conductor = yield* Conductor
        // No worker: pending, and scheduled for later.
        const pending = yield* conductor.invoke(Quick, {})
        const scheduled = yield* conductor.invoke(Quick, {}, { delay: "1 hour" })
        assert.isTrue(yield* conductor.cancel(pending, { reason: "changed my mind" }))
        assert.isTrue(yield* conductor.cancel(scheduled))
        const cancelled = yield* Effect.flip(conductor.result(Quick, pending))
        assert.strictEqual(cancelled._tag, "ExecutionCancelled")
        if (cancelled._tag === "ExecutionCancelled") assert.strictEqual(cancelled.reason, "changed my mind")
        assert.strictEqual((yield* Effect.flip(conductor.result(Quick, scheduled)))._tag, "ExecutionCancelled")
        assert.isFalse(yield* conductor.cancel(pending), "already cancelled")
        assert.strictEqual((yield* conductor.get(pending)).status, "cancelled")

        let runs = 0
        const done = yield* withWorker(
          Quick.toLayer(() => Effect.sync(() => `run ${++runs}`)),
          { queue },
          backend.settle(Effect.gen(function*() {
            const id = yield* conductor.invoke(Quick, {})
            yield* conductor.result(Quick, id)
            return id
          }))
        )
        assert.strictEqual(runs, 1, "the cancelled ones never ran")
        assert.isFalse(yield* conductor.cancel(done), "finished: nothing to cancel")
        assert.strictEqual(yield* conductor.result(Quick, done), "run 1")
        const missing = yield* Effect.flip(conductor.cancel("00000000-0000-4000-8000-000000000000"))
        assert.strictEqual(missing._tag, "ExecutionNotFound")
      }))
  })
}
