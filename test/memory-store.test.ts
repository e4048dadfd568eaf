/**
 * The in-memory backend and the test layer: what only they have (the
 * clock-moving helpers, inspection), and store rules checked directly.
 * Behaviour shared with Postgres lives in test/behaviour.
 */
import { assert, describe, it } from "@effect/vitest"
import { Cause, Clock, Context, Deferred, Effect, Exit, Fiber, Layer, PubSub, References, Schema } from "effect"
import { TestClock } from "effect/testing"
import { Conductor } from "../src/Conductor.ts"
import * as Durable from "../src/Durable.ts"
import * as MemoryStore from "../src/internal/memory/MemoryStore.ts"
import { type NewExecution, type Signal, type StepRecord, Store, type StoreService } from "../src/internal/Store.ts"
import { StoreError } from "../src/Errors.ts"
import * as Task from "../src/Task.ts"
import * as TestConductor from "../src/TestConductor.ts"

const HOUR = 3_600_000
const DAY = 24 * HOUR

/** Records (label, clock time) for every run, in order. */
const makeLog = () => {
  const entries: Array<readonly [string, number]> = []
  const add = (label: string) => Effect.map(Clock.currentTimeMillis, (t) => void entries.push([label, t]))
  return { entries, add }
}

describe("TestConductor helpers", () => {
  it.effect("runUntilIdle moves the clock through due times in deadline order, and stops at the last", () => {
    const Ping = Task.make("ping", { payload: Schema.Struct({ label: Schema.String }) })
    const Sleeper = Task.make("sleeper", { payload: Schema.Struct({}) })
    const log = makeLog()
    const handlers = Layer.mergeAll(
      Ping.toLayer(({ label }) => log.add(label)),
      Sleeper.toLayer(() =>
        Effect.gen(function*() {
          yield* Durable.sleep("two days", "2 days")
          yield* log.add("sleeper woke")
        })
      )
    )
    return Effect.gen(function*() {
      const conductor = yield* Conductor
      const t0 = yield* Clock.currentTimeMillis
      yield* conductor.invoke(Ping, { label: "3 days" }, { delay: "3 days" })
      yield* conductor.invoke(Ping, { label: "1 hour" }, { delay: "1 hour" })
      yield* conductor.invoke(Sleeper, {})
      yield* conductor.invoke(Ping, { label: "1 day" }, { runAt: t0 + DAY })
      yield* conductor.invoke(Ping, { label: "now" })
      yield* TestConductor.runUntilIdle
      assert.deepStrictEqual(log.entries.map(([label, t]) => [label, t - t0]), [
        ["now", 0],
        ["1 hour", HOUR],
        ["1 day", DAY],
        ["sleeper woke", 2 * DAY],
        ["3 days", 3 * DAY]
      ])
      assert.strictEqual((yield* Clock.currentTimeMillis) - t0, 3 * DAY, "the clock stops at the last due time")
      const all = yield* TestConductor.executions
      assert.deepStrictEqual(all.map((e) => e.status), ["completed", "completed", "completed", "completed", "completed"])
    }).pipe(Effect.provide(handlers.pipe(Layer.provideMerge(TestConductor.layer()))))
  })

  it.effect("retry backoff happens at exactly the task's delays (no jitter)", () => {
    const Flaky = Task.make("flaky", {
      payload: Schema.Struct({}),
      success: Schema.String,
      maxAttempts: 4,
      retry: { backoff: "exponential", base: "1 minute", max: "3 minutes", jitter: false }
    })
    const log = makeLog()
    const FlakyLive = Flaky.toLayer(() =>
      Effect.gen(function*() {
        yield* log.add("run")
        const { attempt } = yield* Durable.execution
        if (attempt < 4) return yield* Effect.die(new Error("not yet"))
        return "ok"
      })
    )
    return Effect.gen(function*() {
      const conductor = yield* Conductor
      const t0 = yield* Clock.currentTimeMillis
      const id = yield* conductor.invoke(Flaky, {})
      assert.strictEqual(yield* TestConductor.result(Flaky, id), "ok")
      // 1 minute, 2 minutes, then capped at 3.
      assert.deepStrictEqual(log.entries.map(([, t]) => (t - t0) / 60_000), [0, 1, 3, 6])
      assert.strictEqual(yield* TestConductor.attempts(id), 4)
    }).pipe(Effect.provide(FlakyLive.pipe(Layer.provideMerge(TestConductor.layer()))))
  })

  it.effect("the clock does not move while a handler is still busy (it waits for every fiber to settle)", () => {
    const Busy = Task.make("busy", { payload: Schema.Struct({}), success: Schema.Number })
    const Later = Task.make("later", { payload: Schema.Struct({}) })
    const handlers = Layer.mergeAll(
      Busy.toLayer(() =>
        Effect.gen(function*() {
          const start = yield* Durable.step("start", Clock.currentTimeMillis)
          // Many hops between fibers without a write: not idle, just busy.
          for (let i = 0; i < 100; i++) yield* Fiber.join(yield* Effect.forkChild(Effect.yieldNow))
          const end = yield* Durable.step("end", Clock.currentTimeMillis)
          return end - start
        })
      ),
      Later.toLayer(() => Effect.void)
    )
    return Effect.gen(function*() {
      const conductor = yield* Conductor
      const busy = yield* conductor.invoke(Busy, {})
      yield* conductor.invoke(Later, {}, { delay: "1 hour" })
      yield* TestConductor.runUntilIdle
      assert.strictEqual(yield* conductor.result(Busy, busy), 0)
    }).pipe(Effect.provide(handlers.pipe(Layer.provideMerge(TestConductor.layer()))))
  })

  it.effect("sleeps inside a running handler are due times too", () => {
    const Poller = Task.make("poller", { payload: Schema.Struct({}), success: Schema.Number })
    const PollerLive = Poller.toLayer(() =>
      Effect.gen(function*() {
        // Not a durable sleep: the attempt stays running while it waits.
        yield* Effect.sleep("10 minutes")
        yield* Durable.sleep("short", "500 millis") // inline (under the worker's inlineSleep)
        return yield* Clock.currentTimeMillis
      })
    )
    return Effect.gen(function*() {
      const conductor = yield* Conductor
      const t0 = yield* Clock.currentTimeMillis
      const id = yield* conductor.invoke(Poller, {})
      yield* TestConductor.runUntilIdle
      assert.strictEqual(yield* TestConductor.status(id), "completed")
      assert.strictEqual((yield* conductor.result(Poller, id)) - t0, 10 * 60_000 + 500)
    }).pipe(Effect.provide(PollerLive.pipe(Layer.provideMerge(TestConductor.layer()))))
  })

  it.effect("an attempt's timeout fires under result()", () => {
    const Hang = Task.make("hang", { payload: Schema.Struct({}), maxAttempts: 1, timeout: "30 seconds" })
    const gate = Deferred.makeUnsafe<void>()
    const HangLive = Hang.toLayer(() => Deferred.await(gate))
    return Effect.gen(function*() {
      const conductor = yield* Conductor
      const id = yield* conductor.invoke(Hang, {})
      const error = yield* Effect.flip(TestConductor.result(Hang, id))
      assert.strictEqual(error._tag, "ExecutionFailed")
      assert.include(error.message, "timed out after 30000 ms")
    }).pipe(Effect.provide(HangLive.pipe(Layer.provideMerge(TestConductor.layer()))))
  })

  it.effect("advance stops short: what is due later has not run", () => {
    const Reminder = Task.make("reminder", { payload: Schema.Struct({ to: Schema.String }) })
    let sent = 0
    const ReminderLive = Reminder.toLayer(() => Effect.sync(() => void sent++))
    return Effect.gen(function*() {
      const conductor = yield* Conductor
      const id = yield* conductor.invoke(Reminder, { to: "ada" }, { delay: "2 hours" })
      yield* TestConductor.advance("1 hour")
      assert.strictEqual(sent, 0)
      assert.strictEqual(yield* TestConductor.status(id), "scheduled")
      yield* TestConductor.advance("1 hour")
      assert.strictEqual(sent, 1)
      assert.strictEqual(yield* TestConductor.status(id), "completed")
    }).pipe(Effect.provide(ReminderLive.pipe(Layer.provideMerge(TestConductor.layer()))))
  })

  it.effect("TestClock.adjust works as well: the layer's clock follows the TestClock", () => {
    const Nap = Task.make("nap", { payload: Schema.Struct({}), success: Schema.Number })
    const NapLive = Nap.toLayer(() => Effect.andThen(Durable.sleep("nap", "3 days"), Clock.currentTimeMillis))
    return Effect.gen(function*() {
      const conductor = yield* Conductor
      const t0 = yield* Clock.currentTimeMillis
      const id = yield* conductor.invoke(Nap, {})
      yield* TestConductor.settle
      assert.strictEqual(yield* TestConductor.status(id), "waiting")
      yield* TestClock.adjust("3 days")
      assert.strictEqual((yield* conductor.result(Nap, id)) - t0, 3 * DAY)
    }).pipe(Effect.provide(NapLive.pipe(Layer.provideMerge(TestConductor.layer()))))
  })

  it.effect("runUntilIdle treats handlers waiting on something outside as idle", () => {
    const Gated = Task.make("gated", { payload: Schema.Struct({}), success: Schema.String })
    const gate = Deferred.makeUnsafe<string>()
    const GatedLive = Gated.toLayer(() => Deferred.await(gate))
    return Effect.gen(function*() {
      const conductor = yield* Conductor
      const id = yield* conductor.invoke(Gated, {})
      yield* TestConductor.runUntilIdle
      assert.strictEqual(yield* TestConductor.status(id), "running")
      yield* Deferred.succeed(gate, "opened")
      assert.strictEqual(yield* TestConductor.result(Gated, id), "opened")
    }).pipe(Effect.provide(GatedLive.pipe(Layer.provideMerge(TestConductor.layer()))))
  })

  it.effect("result() fails with Stuck when the execution can never finish", () => {
    const Orphan = Task.make("orphan", { payload: Schema.Struct({}), queue: "nobody-works-here" })
    return Effect.gen(function*() {
      const conductor = yield* Conductor
      const id = yield* conductor.invoke(Orphan, {})
      const exit = yield* Effect.exit(TestConductor.result(Orphan, id, { stallTimeout: "50 millis" }))
      assert.isTrue(Exit.isFailure(exit))
      if (Exit.isFailure(exit)) {
        const stuck = exit.cause.reasons.find((r) => r._tag === "Die")
        assert.instanceOf(stuck && Cause.isDieReason(stuck) ? stuck.defect : undefined, TestConductor.Stuck)
        assert.include(String((stuck as { defect: Error }).defect.message), `orphan ${id} (pending)`)
      }
    }).pipe(Effect.provide(TestConductor.layer()))
  })

  it.effect("a worker that cannot start is named in the Stuck message", () => {
    const Job = Task.make("bad-config-job", { payload: Schema.Struct({}) })
    return Effect.gen(function*() {
      const conductor = yield* Conductor
      const id = yield* conductor.invoke(Job, {})
      const exit = yield* Effect.exit(TestConductor.result(Job, id, { stallTimeout: "20 millis" }))
      assert.isTrue(Exit.isFailure(exit))
      if (Exit.isFailure(exit)) assert.include(Cause.pretty(exit.cause), "concurrency must be a positive integer")
    }).pipe(
      Effect.provide(Job.toLayer(() => Effect.void).pipe(Layer.provideMerge(TestConductor.layer({ worker: { concurrency: 0 } })))),
      Effect.provideService(References.MinimumLogLevel, "None")
    )
  })

  it.effect("invoked lists each task's executions with decoded payloads, children included", () => {
    const Line = Task.make("line", { payload: Schema.Struct({ sku: Schema.String, qty: Schema.Number }), success: Schema.Number })
    const Order = Task.make("order", { payload: Schema.Struct({ lines: Schema.Array(Schema.String) }), success: Schema.Number })
    const handlers = Layer.mergeAll(
      Line.toLayer(({ qty }) => Effect.succeed(qty * 3)),
      Order.toLayer(({ lines }) =>
        Effect.map(
          Effect.orDie(Effect.all(lines.map((sku, i) => Durable.invoke(`line-${sku}`, Line, { sku, qty: i + 1 })), { concurrency: "unbounded" })),
          (totals) => totals.reduce((a, b) => a + b, 0)
        )
      )
    )
    return Effect.gen(function*() {
      const conductor = yield* Conductor
      const id = yield* conductor.invoke(Order, { lines: ["a", "b"] }, { dedupeKey: "order-1", priority: 3 })
      assert.strictEqual(yield* TestConductor.result(Order, id), 9)
      const orders = yield* TestConductor.invoked(Order)
      assert.deepStrictEqual(orders.map((o) => [o.id, o.payload, o.status, o.dedupeKey, o.priority]), [
        [id, { lines: ["a", "b"] }, "completed", "order-1", 3]
      ])
      const lines = yield* TestConductor.invoked(Line)
      assert.deepStrictEqual(lines.map((l) => [l.payload, l.parentId, l.parentStep, l.status]), [
        [{ sku: "a", qty: 1 }, id, "line-a", "completed"],
        [{ sku: "b", qty: 2 }, id, "line-b", "completed"]
      ])
      const steps = yield* TestConductor.steps(id)
      assert.deepStrictEqual(Object.keys(steps).sort(), ["line-a", "line-b"])
      assert.strictEqual(steps["line-a"]!.kind, "child")
    }).pipe(Effect.provide(handlers.pipe(Layer.provideMerge(TestConductor.layer()))))
  })

  it.effect("worker: false starts no worker; the queue option limits workers to one queue", () => {
    const A = Task.make("on-a", { payload: Schema.Struct({}), queue: "a" })
    const B = Task.make("on-b", { payload: Schema.Struct({}), queue: "b" })
    const handlers = Layer.mergeAll(A.toLayer(() => Effect.void), B.toLayer(() => Effect.void))
    const run = (options: TestConductor.TestConductorOptions) =>
      Effect.gen(function*() {
        const conductor = yield* Conductor
        const a = yield* conductor.invoke(A, {})
        const b = yield* conductor.invoke(B, {})
        yield* TestConductor.runUntilIdle
        return [yield* TestConductor.status(a), yield* TestConductor.status(b)]
      }).pipe(Effect.provide(handlers.pipe(Layer.provideMerge(TestConductor.layer(options)))))
    return Effect.gen(function*() {
      assert.deepStrictEqual(yield* run({}), ["completed", "completed"])
      assert.deepStrictEqual(yield* run({ worker: false }), ["pending", "pending"])
      assert.deepStrictEqual(yield* run({ worker: { queue: "b" } }), ["pending", "completed"])
    })
  })
})

// --- the store itself ------------------------------------------------------------

const exec = (id: string, overrides: Partial<NewExecution> = {}): NewExecution => ({
  id,
  task: "t",
  queue: "q",
  payload: { id },
  priority: 0,
  maxAttempts: 2,
  ...overrides
})

const uuid = (n: number) => `00000000-0000-4000-8000-${String(n).padStart(12, "0")}`
const claim = (store: StoreService, workerId: string, limit = 10, leaseMillis = 1000) =>
  store.claim({ queue: "q", tasks: ["t"], limit, workerId, leaseMillis })

describe("result waiters", () => {
  it.effect("a check that fails is retried within a second, not left to the periodic check", () =>
    Effect.gen(function*() {
      const store = yield* MemoryStore.make
      const id = uuid(1)
      yield* store.insert([exec(id)])
      yield* claim(store, "w")
      yield* store.finish("w", [{ _tag: "Completed", id, result: 41 }])
      // The first read of outcomes fails, as with the database down for a moment.
      const failed = yield* Deferred.make<void>()
      const flaky: StoreService = {
        ...store,
        awaitOutcomes: (ids) =>
          Deferred.isDoneUnsafe(failed)
            ? store.awaitOutcomes(ids)
            : Effect.andThen(Deferred.succeed(failed, undefined), Effect.fail(new StoreError({ message: "connection lost", cause: undefined })))
      }
      const Job = Task.make("t", { payload: Schema.Struct({}), success: Schema.Number })
      const conductor = Context.get(yield* Layer.build(Conductor.layer.pipe(Layer.provide(Layer.succeed(Store, flaky)))), Conductor)
      const result = yield* Effect.forkChild(conductor.result(Job, id))
      yield* Deferred.await(failed)
      yield* TestClock.adjust("999 millis")
      assert.isUndefined(result.pollUnsafe())
      yield* TestClock.adjust("1 millis")
      // The retried check runs on other fibers: let them, without moving the clock.
      for (let i = 0; i < 100 && result.pollUnsafe() === undefined; i++) yield* Effect.yieldNow
      assert.isDefined(result.pollUnsafe(), "settled by the retried check, before the periodic one")
      assert.strictEqual(yield* Fiber.join(result), 41)
    }).pipe(Effect.scoped, Effect.provide(TestClock.layer())))
})

describe("MemoryStore", () => {
  it.effect("claims by priority, then run_at, then first enqueued; counts the attempt and leases", () =>
    Effect.gen(function*() {
      const store = yield* MemoryStore.make
      yield* store.insert([exec(uuid(3)), exec(uuid(1), { priority: 5 }), exec(uuid(2))])
      yield* store.insert([exec(uuid(4), { task: "other" }), exec(uuid(5), { queue: "elsewhere" })])
      const claimed = yield* claim(store, "w1", 2)
      assert.deepStrictEqual(claimed.map((c) => [c.id, c.attempt]), [[uuid(1), 1], [uuid(3), 1]])
      assert.deepStrictEqual((yield* claim(store, "w2")).map((c) => c.id), [uuid(2)])
      assert.strictEqual((yield* store.get(uuid(1)))!.status, "running")
    }).pipe(Effect.scoped))

  it.effect("every write is fenced by the lease: another worker's outcome changes nothing", () =>
    Effect.gen(function*() {
      const store = yield* MemoryStore.make
      yield* store.insert([exec(uuid(1))])
      yield* claim(store, "w1")
      yield* store.finish("w2", [{ _tag: "Completed", id: uuid(1), result: "stolen" }])
      assert.strictEqual((yield* store.get(uuid(1)))!.status, "running")
      const [step] = yield* store.recordSteps("w2", [{
        executionId: uuid(1),
        record: { name: "s", kind: "step", value: 1, error: undefined, attempt: 1 }
      }])
      assert.isUndefined(step)
      assert.deepStrictEqual(yield* store.heartbeat("w2", [uuid(1)], 1000), { lost: [uuid(1)], cancelRequested: [], dispatched: 0 })
      yield* store.finish("w1", [{ _tag: "Completed", id: uuid(1), result: "mine" }])
      const [outcome] = yield* store.outcomes([uuid(1)])
      assert.deepStrictEqual([outcome!.status, outcome!.result], ["completed", "mine"])
    }).pipe(Effect.scoped))

  it.effect("expired leases: runnable again while attempts remain, failed for good after", () =>
    Effect.gen(function*() {
      const store = yield* MemoryStore.make
      yield* store.insert([exec(uuid(1))])
      yield* claim(store, "w1")
      yield* TestClock.adjust(500)
      assert.strictEqual(yield* store.recoverExpiredLeases, 0, "still leased")
      yield* TestClock.adjust(600)
      assert.strictEqual(yield* store.recoverExpiredLeases, 1)
      const row = (yield* store.get(uuid(1)))!
      assert.deepStrictEqual([row.status, row.attempts, row.error?._tag], ["pending", 1, "Defect"])
      yield* claim(store, "w2")
      yield* TestClock.adjust(1100)
      yield* store.recoverExpiredLeases
      const [outcome] = yield* store.outcomes([uuid(1)])
      assert.deepStrictEqual([outcome!.status, outcome!.attempts], ["failed", 2])
      // The dead worker's late write changes nothing.
      yield* store.finish("w2", [{ _tag: "Completed", id: uuid(1), result: 1 }])
      assert.strictEqual((yield* store.outcomes([uuid(1)]))[0]!.status, "failed")
    }).pipe(Effect.scoped))

  it.effect("suspend and release give the attempt back; a wake that arrived while running keeps it runnable", () =>
    Effect.gen(function*() {
      const store = yield* MemoryStore.make
      const now = yield* store.now
      yield* store.insert([exec(uuid(1)), exec(uuid(2))])
      yield* claim(store, "w")
      // uuid(1) suspends until later; uuid(2) is released.
      yield* store.finish("w", [{ _tag: "Suspended", id: uuid(1), until: now + 5000 }, { _tag: "Released", id: uuid(2) }])
      assert.deepStrictEqual([(yield* store.get(uuid(1)))!.status, (yield* store.get(uuid(1)))!.attempts], ["waiting", 0])
      assert.deepStrictEqual([(yield* store.get(uuid(2)))!.status, (yield* store.get(uuid(2)))!.attempts], ["pending", 0])
      assert.deepStrictEqual(yield* store.promoteDue, { next: now + 5000, more: false })
      yield* TestClock.adjust(5000)
      assert.deepStrictEqual(yield* store.promoteDue, { next: undefined, more: false })
      assert.strictEqual((yield* store.get(uuid(1)))!.status, "pending")

      // A child finishing while its parent runs: the parent's suspend finds the wake flag.
      const [parent] = yield* claim(store, "w", 1)
      const [child] = yield* store.startChildren("w", [{
        ...exec(uuid(10)),
        parentId: parent!.id,
        parentStep: "child",
        attempt: parent!.attempt,
        timeoutMillis: undefined
      }])
      assert.deepStrictEqual(child, { id: uuid(10), deadline: undefined })
      const claimedChild = yield* store.claim({ queue: "q", tasks: ["t"], limit: 10, workerId: "w2", leaseMillis: 1000 })
      assert.include(claimedChild.map((c) => c.id), uuid(10))
      yield* store.finish("w2", [{ _tag: "Completed", id: uuid(10), result: 7 }])
      yield* store.finish("w", [{ _tag: "Suspended", id: parent!.id, until: undefined }])
      assert.strictEqual((yield* store.get(parent!.id))!.status, "pending")
    }).pipe(Effect.scoped))

  it.effect("dedupe among unfinished executions of a task; steps and children are first-writer-wins", () =>
    Effect.gen(function*() {
      const store = yield* MemoryStore.make
      const [a, b, c] = yield* store.insert([
        exec(uuid(1), { dedupeKey: "k" }),
        exec(uuid(2), { dedupeKey: "k" }),
        exec(uuid(3), { dedupeKey: "k", task: "u" })
      ])
      assert.deepStrictEqual([a, b, c], [
        { id: uuid(1), created: true },
        { id: uuid(1), created: false },
        { id: uuid(3), created: true }
      ])
      yield* claim(store, "w")
      const record = { name: "s", kind: "step" as const, error: undefined, attempt: 1 }
      const [first] = yield* store.recordSteps("w", [{ executionId: uuid(1), record: { ...record, value: "first" } }])
      const [late] = yield* store.recordSteps("w", [{ executionId: uuid(1), record: { ...record, value: "late" } }])
      assert.strictEqual((first as StepRecord).value, "first")
      assert.strictEqual((late as StepRecord).value, "first", "a late writer adopts the stored value")
      const child = { ...exec(uuid(20)), parentId: uuid(1), parentStep: "c", attempt: 1, timeoutMillis: 100 }
      const [started] = yield* store.startChildren("w", [child])
      const [again] = yield* store.startChildren("w", [{ ...child, id: uuid(21) }])
      assert.strictEqual((started as { id: string }).id, uuid(20))
      assert.deepStrictEqual(again, started, "once per (parent, step)")
      assert.strictEqual((yield* store.children(uuid(1))).length, 1)
      yield* store.finish("w", [{ _tag: "Completed", id: uuid(1), result: null }])
      const [fresh] = yield* store.insert([exec(uuid(4), { dedupeKey: "k" })])
      assert.deepStrictEqual(fresh, { id: uuid(4), created: true }, "the key is free once finished")
    }).pipe(Effect.scoped))

  it.effect("cancel cascades: waiting rows finish at once, running ones are flagged and signalled", () =>
    Effect.gen(function*() {
      const store = yield* MemoryStore.make
      const signals = yield* store.signals
      yield* store.insert([exec(uuid(1))])
      yield* claim(store, "w")
      yield* store.startChildren("w", [
        { ...exec(uuid(2)), parentId: uuid(1), parentStep: "a", attempt: 1, timeoutMillis: undefined },
        { ...exec(uuid(3)), parentId: uuid(1), parentStep: "b", attempt: 1, timeoutMillis: undefined }
      ])
      yield* store.claim({ queue: "q", tasks: ["t"], limit: 1, workerId: "w2", leaseMillis: 1000 }) // uuid(2) runs
      assert.strictEqual(yield* store.cancel(uuid(1), "enough"), "requested")
      assert.strictEqual((yield* store.get(uuid(3)))!.status, "cancelled")
      assert.strictEqual((yield* store.get(uuid(2)))!.status, "running")
      assert.deepStrictEqual(yield* store.heartbeat("w2", [uuid(2)], 1000), {
        lost: [],
        cancelRequested: [{ id: uuid(2), reason: "enough" }],
        dispatched: 0
      })
      assert.deepStrictEqual(yield* firstCancel(signals), [uuid(1), uuid(2)])
      // The worker stops it; a completion racing with the cancel still ends cancelled.
      yield* store.finish("w2", [{ _tag: "Completed", id: uuid(2), result: 1 }])
      const [outcome] = yield* store.outcomes([uuid(2)])
      assert.deepStrictEqual([outcome!.status, outcome!.error], ["cancelled", { _tag: "Cancelled", reason: "enough" }])
      assert.strictEqual(yield* store.cancel(uuid(2), "again"), "finished")
      assert.strictEqual(yield* store.cancel(uuid(99), "?"), "not-found")
    }).pipe(Effect.scoped))
})

const firstCancel = (signals: PubSub.Subscription<Signal>) =>
  Effect.gen(function*() {
    while (true) {
      const signal = yield* PubSub.take(signals)
      if (signal._tag === "Cancel") return signal.ids
    }
  })
