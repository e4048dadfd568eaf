/**
 * Testing workflows without Postgres and without waiting.
 *
 * `TestConductor.layer()` gives a test the `Conductor` client over an
 * in-memory store that reads Effect's `Clock`, starts a worker for every
 * queue that has a handler, and adds helpers that move the `TestClock` for
 * you: a workflow that sleeps for a week, retries with backoff and waits on a
 * child finishes in milliseconds.
 *
 * ```ts
 * import { it } from "@effect/vitest"
 * import { Effect, Layer } from "effect"
 * import { Conductor, TestConductor } from "effect-conductor"
 *
 * const TestLive = ProcessOrderLive.pipe(Layer.provideMerge(TestConductor.layer()))
 *
 * it.effect("charges after the cool-off", () =>
 *   Effect.gen(function*() {
 *     const conductor = yield* Conductor.Conductor
 *     const id = yield* conductor.invoke(ProcessOrder, { orderId: "o-1" })
 *     const result = yield* TestConductor.result(ProcessOrder, id) // moves the clock as needed
 *     expect(result.total).toBe(42)
 *   }).pipe(Effect.provide(TestLive)))
 * ```
 *
 * Time: the layer must be built where the `TestClock` is (inside `it.effect`,
 * or an `@effect/vitest` `layer(...)` without `excludeTestServices`). The
 * store, workers and handlers then all read that clock, and the helpers move
 * it from one due time to the next, letting everything that became runnable
 * finish before moving again, so deadlines fire in order.
 *
 * @since 0.1.0
 */
import { Cause, Clock, Context, Data, Duration, Effect, Fiber, Layer, Option, Queue, Scheduler } from "effect"
import type { Scope } from "effect"
import type { TestClock } from "effect/testing"
import { Conductor, type ExecutionInfo, type StepInfo } from "./Conductor.ts"
import { Execution } from "./Execution.ts"
import { decodeJson } from "./internal/codec.ts"
import { type MemoryInspector, makeWithInspector } from "./internal/memory/MemoryStore.ts"
import { Registry } from "./internal/Registry.ts"
import type { Status } from "./internal/Store.ts"
import { Store } from "./internal/Store.ts"
import type { AnySchema, Task } from "./Task.ts"
import * as Worker from "./Worker.ts"

/** Options of `TestConductor.layer`. */
export interface TestConductorOptions {
  /**
   * Settings of the workers the layer starts, one per queue as soon as a
   * handler of that queue is registered (or only for `queue` when it is set).
   * `false` starts none: start your own with `Worker.layer`.
   *
   * Defaults suited to a frozen clock: `shutdownGrace` 0 (handlers still
   * running when the test ends are interrupted), a one-day lease with a
   * heartbeat every 8 hours and a daily safety poll (in-memory signals are
   * never lost), so moving the clock by weeks costs a few dozen timer
   * firings, not hundreds of thousands.
   */
  readonly worker?: Worker.WorkerOptions | false | undefined
}

/** Bounds of the helpers that move the clock. */
export interface RunOptions {
  /** Most clock moves before giving up with `Stuck`. Default 1000. */
  readonly maxSteps?: number | undefined
  /**
   * `runUntil` / `result` only: how long (real time) to wait for progress from
   * outside the clock (real I/O in a handler) when nothing is due, before
   * failing with `Stuck`. Default 2 seconds.
   */
  readonly stallTimeout?: Duration.Input | undefined
}

/** An execution as the test layer lists it: its decoded payload and where it is. */
export interface Invocation<P> {
  readonly id: string
  readonly task: string
  readonly payload: P
  readonly status: Status
  readonly attempts: number
  readonly priority: number
  /** The parent execution, for children started with `Durable.invoke`. */
  readonly parentId: string | undefined
  /** The parent's step name that started it. */
  readonly parentStep: string | undefined
  readonly dedupeKey: string | undefined
  readonly createdAt: Date
}

/**
 * A clock-moving helper could not finish: what it waits for will not happen
 * by moving the clock (nothing is runnable or due), or it hit `maxSteps`.
 * Raised as a defect, so the test fails with this message.
 */
export class Stuck extends Data.TaggedError("Stuck")<{ readonly message: string }> {}

/** The test layer's helpers, as a service. The module-level functions are shortcuts to it. */
export class TestConductor extends Context.Service<TestConductor, {
  /** Moves the clock from due time to due time until nothing is runnable or due. */
  readonly runUntilIdle: (options?: RunOptions) => Effect.Effect<void>
  /** Runs `effect`, moving the clock to the next due time whenever everything else is waiting. */
  readonly runUntil: <A, E, R>(effect: Effect.Effect<A, E, R>, options?: RunOptions) => Effect.Effect<A, E, R>
  /** Moves the clock by `duration`, stopping at each due time on the way so the work it releases runs in order. */
  readonly advance: (duration: Duration.Input) => Effect.Effect<void>
  /** Lets every fiber run until none can make progress without the clock moving. */
  readonly settle: Effect.Effect<void>
  /** Every execution in the store, in creation order. */
  readonly executions: Effect.Effect<ReadonlyArray<Invocation<unknown>>>
}>()("effect-conductor/TestConductor") {}

// --- clocks -------------------------------------------------------------------

interface TrackedSleep {
  readonly deadline: number
  /**
   * handler: inside a handler (inline durable sleeps, `Effect.sleep` in a step);
   * worker: a worker's own timers (heartbeat, poll, due-time timer, attempt timeouts);
   * other: anything else reading the clock (the test itself).
   */
  readonly kind: "handler" | "worker" | "other"
}

/** A clock's time readings, delegated (the wrappers below change only how it sleeps). */
const readsOf = (inner: Clock.Clock): Omit<Clock.Clock, "sleep"> => ({
  currentTimeMillisUnsafe: () => inner.currentTimeMillisUnsafe(),
  currentTimeMillis: inner.currentTimeMillis,
  currentTimeNanosUnsafe: () => inner.currentTimeNanosUnsafe(),
  currentTimeNanos: inner.currentTimeNanos,
  monotonicTimeNanosUnsafe: () => inner.monotonicTimeNanosUnsafe(),
  monotonicTimeNanos: inner.monotonicTimeNanos
})

/**
 * The clock handed to handlers and to the test: it delegates to the clock in
 * context (the `TestClock`), and remembers who sleeps until when, so the
 * helpers know the next time worth moving to. It also answers `TestClock`'s
 * methods, so `TestClock.adjust` keeps working in the test.
 */
const trackingClock = (inner: Clock.Clock, sleeps: Set<TrackedSleep>, bump: () => void, worker = false) => {
  const test = inner as Partial<TestClock.TestClock>
  const clock: Clock.Clock & Pick<TestClock.TestClock, "adjust" | "setTime" | "withLive"> = {
    ...readsOf(inner),
    sleep: (duration) =>
      Effect.flatMap(Effect.serviceOption(Execution), (execution) =>
        Effect.acquireUseRelease(
          Effect.sync(() => {
            const entry: TrackedSleep = {
              deadline: inner.currentTimeMillisUnsafe() + Duration.toMillis(duration),
              kind: Option.isSome(execution) ? "handler" : worker ? "worker" : "other"
            }
            sleeps.add(entry)
            bump()
            return entry
          }),
          () => inner.sleep(duration),
          (entry) =>
            Effect.sync(() => {
              sleeps.delete(entry)
              bump()
            })
        )),
    adjust: (duration) => test.adjust ? test.adjust(duration) : Effect.die(notTestClock),
    setTime: (timestamp) => test.setTime ? test.setTime(timestamp) : Effect.die(notTestClock),
    withLive: (effect) => test.withLive ? test.withLive(effect) : effect
  }
  return clock
}

const notTestClock = new Error("TestConductor: the layer was built without a TestClock; use it.effect or a layer() without excludeTestServices")

/**
 * The client's waiters have a 5-second safety poll for lost notifications.
 * In-memory signals are never lost, and under a TestClock that poll would
 * fire every 5 virtual seconds; the client gets a clock whose timers never fire.
 */
const quietClock = (inner: Clock.Clock): Clock.Clock => ({ ...readsOf(inner), sleep: () => Effect.never })

/** Counts Effect tasks scheduled and not yet run, across every fiber that uses it. */
interface TaskCounter {
  pending: number
}

/**
 * Wraps the scheduler in context (the TestClock's) to count outstanding
 * tasks: when none is queued at an event-loop boundary, every fiber of the
 * layer, its handlers and the test is suspended, waiting for the clock or for
 * something outside. That is how the helpers know the system has settled.
 */
const countingScheduler = (inner: Scheduler.Scheduler, counter: TaskCounter): Scheduler.Scheduler => ({
  executionMode: inner.executionMode,
  shouldYield: (fiber) => inner.shouldYield(fiber),
  makeDispatcher() {
    const dispatcher = inner.makeDispatcher()
    return {
      scheduleTask(task, priority) {
        counter.pending++
        dispatcher.scheduleTask(() => {
          try {
            task()
          } finally {
            counter.pending--
          }
        }, priority)
      },
      flush() {
        dispatcher.flush()
      }
    }
  }
})

/** One turn of the real event loop; true when no Effect task was queued at its end. */
const quietTurn = (counter: TaskCounter) =>
  Effect.callback<boolean>((resume) => {
    const handle = setImmediate(() => resume(Effect.succeed(counter.pending === 0)))
    return Effect.sync(() => clearImmediate(handle))
  })

const liveSleep = (millis: number) =>
  Effect.callback<void>((resume) => {
    const handle = setTimeout(() => resume(Effect.void), millis)
    return Effect.sync(() => clearTimeout(handle))
  })

/** Quiet event-loop turns in a row (no task queued, no write, signal or new sleep) that count as settled. */
const QUIET_TURNS = 2

const testWorkerDefaults: Worker.WorkerOptions = {
  leaseDuration: "1 day",
  heartbeatInterval: "8 hours",
  pollInterval: "1 day",
  shutdownGrace: Duration.zero
}

// --- the layer ----------------------------------------------------------------

const make = (options: TestConductorOptions) =>
  Effect.gen(function*() {
    const inner = yield* Clock.clockWith(Effect.succeed)
    const counter: TaskCounter = { pending: 0 }
    const scheduler = countingScheduler(yield* Effect.service(Scheduler.Scheduler), counter)
    return yield* build(options, inner, counter, scheduler).pipe(Effect.provideService(Scheduler.Scheduler, scheduler))
  })

const build = (options: TestConductorOptions, inner: Clock.Clock, counter: TaskCounter, scheduler: Scheduler.Scheduler) =>
  Effect.gen(function*() {
    const testClock = inner as Partial<TestClock.TestClock>
    const sleeps = new Set<TrackedSleep>()
    let clockVersion = 0
    const clock = trackingClock(inner, sleeps, () => clockVersion++)
    const workerErrors: Array<string> = []

    const { inspector, store } = yield* makeWithInspector
    const storeContext = Context.make(Store, store)
    const conductorContext = yield* Layer.build(Conductor.layer).pipe(
      Effect.provideContext(storeContext),
      Effect.provideService(Clock.Clock, quietClock(inner))
    )
    const registry = Context.get(conductorContext, Registry)
    const context = Context.merge(storeContext, conductorContext)

    if (options.worker !== false) {
      const workerClock = trackingClock(inner, sleeps, () => clockVersion++, true)
      yield* startWorkers(workerErrors, options.worker ?? {}, context, registry).pipe(Effect.provideService(Clock.Clock, workerClock))
    }

    const helpers = makeHelpers(inspector, sleeps, () => clockVersion, inner, testClock, counter, workerErrors)
    return Context.add(context, TestConductor, TestConductor.of(helpers)).pipe(
      // Handlers and the test read the tracking clock (it wraps the TestClock)
      // and run on the counting scheduler (it wraps the TestClock's).
      Context.add(Clock.Clock, clock),
      Context.add(Scheduler.Scheduler, scheduler)
    )
  })

/** Starts a worker for each queue as its first handler registers. */
const startWorkers = (
  workerErrors: Array<string>,
  workerOptions: Worker.WorkerOptions,
  context: Context.Context<Store | Registry | Conductor>,
  registry: Registry["Service"]
) =>
  Effect.gen(function*() {
    const scope = yield* Effect.scope
    const queues = yield* Queue.unbounded<string>()
    const started = new Set<string>()
    yield* registry.onRegister((queue) => {
      if (workerOptions.queue === undefined || workerOptions.queue === queue) Queue.offerUnsafe(queues, queue)
    })
    yield* Effect.gen(function*() {
      while (true) {
        const queue = yield* Queue.take(queues)
        if (started.has(queue)) continue
        started.add(queue)
        yield* Layer.buildWithScope(Worker.Worker.layer({ ...testWorkerDefaults, ...workerOptions, queue }), scope).pipe(
          Effect.provideContext(context),
          Effect.catchCause((cause) =>
            Effect.sync(() => void workerErrors.push(`queue "${queue}": ${Cause.pretty(cause)}`)).pipe(
              Effect.andThen(Effect.logError(`TestConductor: the worker for queue "${queue}" did not start`, cause))
            )
          )
        )
      }
    }).pipe(Effect.forkScoped)
  })

const makeHelpers = (
  inspector: MemoryInspector,
  sleeps: ReadonlySet<TrackedSleep>,
  clockVersion: () => number,
  inner: Clock.Clock,
  testClock: Partial<TestClock.TestClock>,
  counter: TaskCounter,
  workerErrors: ReadonlyArray<string>
): TestConductor["Service"] => {
  const version = () => inspector.version() + clockVersion()

  const settle = Effect.gen(function*() {
    let quiet = 0
    let last = -1
    while (quiet < QUIET_TURNS) {
      const idle = yield* quietTurn(counter)
      const current = version()
      if (idle && current === last) quiet++
      else {
        quiet = 0
        last = current
      }
    }
  })

  /**
   * The next time worth moving to. Always: store due times (delayed and retried
   * executions, durable sleeps, child timeouts) and sleeps inside handlers.
   * `all` adds sleeps of the test's own fibers, and, while some execution is
   * running, the workers' timers (an attempt's timeout is one of them).
   */
  const nextDeadline = (all: boolean) => {
    const now = inner.currentTimeMillisUnsafe()
    let next = inspector.nextDue()
    const running = all && inspector.executions().some((row) => row.status === "running")
    for (const sleep of sleeps) {
      if (sleep.kind === "other" && !all) continue
      if (sleep.kind === "worker" && !running) continue
      if (sleep.deadline > now && (next === undefined || sleep.deadline < next)) next = sleep.deadline
    }
    return next
  }

  const advanceTo = (at: number) =>
    Effect.suspend(() => {
      const delta = at - inner.currentTimeMillisUnsafe()
      if (delta <= 0) return Effect.void
      return testClock.adjust ? testClock.adjust(delta) : liveSleep(delta)
    })

  const describe = () => {
    const rows = inspector.executions().filter((row) =>
      row.status !== "completed" && row.status !== "failed" && row.status !== "cancelled"
    )
    const errors = workerErrors.length === 0 ? "" : `; workers that did not start: ${workerErrors.join("; ")}`
    if (rows.length === 0) return "no unfinished executions" + errors
    return "unfinished executions: " + rows.map((row) => `${row.task} ${row.id} (${row.status})`).join(", ") + errors
  }

  const stepLimit = (options: RunOptions | undefined) => options?.maxSteps ?? 1000

  const runUntilIdle = (options?: RunOptions) =>
    Effect.gen(function*() {
      const limit = stepLimit(options)
      for (let step = 0;; step++) {
        yield* settle
        const next = nextDeadline(false)
        if (next === undefined) return
        if (step >= limit) {
          return yield* Effect.die(new Stuck({ message: `TestConductor.runUntilIdle: still busy after ${limit} clock moves; ${describe()}` }))
        }
        yield* advanceTo(next)
      }
    })

  const runUntil = <A, E, R>(effect: Effect.Effect<A, E, R>, options?: RunOptions): Effect.Effect<A, E, R> =>
    Effect.gen(function*() {
      const fiber = yield* Effect.forkChild(effect, { startImmediately: true })
      const limit = stepLimit(options)
      const stallMillis = Duration.toMillis(options?.stallTimeout ?? "2 seconds")
      let steps = 0
      while (true) {
        yield* settle
        if (fiber.pollUnsafe() !== undefined) return yield* Fiber.join(fiber)
        const next = nextDeadline(true)
        if (next !== undefined) {
          if (++steps > limit) {
            return yield* Effect.die(new Stuck({ message: `TestConductor.runUntil: not done after ${limit} clock moves; ${describe()}` }))
          }
          yield* advanceTo(next)
          continue
        }
        // Nothing is due: only something outside the clock can help. Wait for it (real time).
        const before = version()
        let waited = 0
        while (fiber.pollUnsafe() === undefined && version() === before && waited < stallMillis) {
          yield* liveSleep(5)
          waited += 5
        }
        if (fiber.pollUnsafe() === undefined && version() === before) {
          yield* Fiber.interrupt(fiber)
          return yield* Effect.die(new Stuck({
            message: `TestConductor.runUntil: waiting for something that cannot happen: nothing is runnable or due; ${describe()}`
          }))
        }
      }
    })

  const advance = (duration: Duration.Input) =>
    Effect.gen(function*() {
      const target = inner.currentTimeMillisUnsafe() + Duration.toMillis(Duration.fromInputUnsafe(duration))
      while (true) {
        yield* settle
        const next = nextDeadline(true)
        if (next === undefined || next > target) break
        yield* advanceTo(next)
      }
      yield* advanceTo(target)
      yield* settle
    })

  const executions = Effect.sync(() =>
    inspector.executions().map((row): Invocation<unknown> => ({
      id: row.id,
      task: row.task,
      payload: row.payload,
      status: row.status,
      attempts: row.attempts,
      priority: row.priority,
      parentId: row.parentId,
      parentStep: row.parentStep,
      dedupeKey: row.dedupeKey,
      createdAt: new Date(row.createdAt)
    }))
  )

  return { runUntilIdle, runUntil, advance, settle, executions }
}

/**
 * The in-memory backend with everything a test needs: `Conductor` (the
 * client), the handler `Registry` your `Task.toLayer` layers register into,
 * the `Store`, workers, and `TestConductor` (the helpers below). Provide your
 * handler layers on top:
 *
 * ```ts
 * const TestLive = Layer.mergeAll(ProcessOrderLive, ChargeLive).pipe(Layer.provideMerge(TestConductor.layer()))
 * ```
 *
 * Workers start on their own, one per queue, as handlers register (see
 * `TestConductorOptions.worker`). The layer reads the `TestClock` in context
 * and hands handlers and the test a clock that delegates to it, so
 * `TestClock.adjust` still works; prefer `runUntilIdle`, `advance` and
 * `result`, which also wait for the work each due time releases.
 */
export const layer = (
  options: TestConductorOptions = {}
): Layer.Layer<Conductor | Registry | Store | TestConductor> =>
  Layer.effectContext(make(options) as Effect.Effect<Context.Context<Conductor | Registry | Store | TestConductor>, never, Scope.Scope>)

// --- helpers --------------------------------------------------------------------

/**
 * Runs everything that can run, moving the clock from one due time to the
 * next (delayed invocations, retry backoffs, durable sleeps, child timeouts,
 * and sleeps inside running handlers), in deadline order, until nothing is
 * runnable or due. Executions waiting on something outside the conductor (a
 * `Deferred` your test completes, real I/O) count as idle. Fails with `Stuck`
 * (a defect) after `maxSteps` clock moves, e.g. for work that reschedules
 * itself forever: use `advance` for those.
 */
export const runUntilIdle: Effect.Effect<void, never, TestConductor> = Effect.flatMap(
  Effect.service(TestConductor),
  (t) => t.runUntilIdle()
)

/** `runUntilIdle` with bounds. */
export const runUntilIdleWith = (options: RunOptions): Effect.Effect<void, never, TestConductor> =>
  Effect.flatMap(Effect.service(TestConductor), (t) => t.runUntilIdle(options))

/**
 * Runs `effect` to completion, moving the clock to the next due time whenever
 * everything (the effect included) is waiting. Fails with `Stuck` (a defect)
 * when nothing is runnable or due and the effect still waits.
 *
 * ```ts
 * const [a, b] = yield* TestConductor.runUntil(Effect.all([conductor.result(A, idA), conductor.result(B, idB)]))
 * ```
 */
export const runUntil = <A, E, R>(
  effect: Effect.Effect<A, E, R>,
  options?: RunOptions
): Effect.Effect<A, E, R | TestConductor> =>
  Effect.flatMap(Effect.service(TestConductor), (t) => t.runUntil(effect, options))

/**
 * Awaits an execution's outcome while moving the clock: its decoded success,
 * or its typed error / `ExecutionFailed` / `ExecutionCancelled`, exactly as
 * `Conductor.result` reports it.
 */
export const result = <const Name extends string, P extends AnySchema, S extends AnySchema, E extends AnySchema>(
  task: Task<Name, P, S, E>,
  id: string,
  options?: RunOptions
) => Effect.flatMap(Effect.service(Conductor), (conductor) => runUntil(conductor.result(task, id), options))

/**
 * Moves the clock by `duration`, stopping at every due time on the way and
 * letting the work it releases finish before moving on. Use it to check what
 * has (not) happened by some time: "not charged before the cool-off ends".
 */
export const advance = (duration: Duration.Input): Effect.Effect<void, never, TestConductor> =>
  Effect.flatMap(Effect.service(TestConductor), (t) => t.advance(duration))

/** Lets every fiber run until nothing changes without moving the clock. */
export const settle: Effect.Effect<void, never, TestConductor> = Effect.flatMap(Effect.service(TestConductor), (t) => t.settle)

/** Every execution in the store (any task, children included), in creation order, payloads as stored (JSON). */
export const executions: Effect.Effect<ReadonlyArray<Invocation<unknown>>, never, TestConductor> = Effect.flatMap(
  Effect.service(TestConductor),
  (t) => t.executions
)

/**
 * The executions of `task`, in creation order, with payloads decoded by the
 * task's schema: what was invoked (by the test, by other handlers, as
 * children) and where each one is now.
 */
export const invoked = <const Name extends string, P extends AnySchema, S extends AnySchema, E extends AnySchema>(
  task: Task<Name, P, S, E>
): Effect.Effect<ReadonlyArray<Invocation<P["Type"]>>, never, TestConductor> =>
  Effect.flatMap(executions, (all) =>
    Effect.forEach(all.filter((row) => row.task === task.name), (row) =>
      Effect.map(
        Effect.orDie(decodeJson(task.codecs.payload, row.payload)),
        (payload): Invocation<P["Type"]> => ({ ...row, payload })
      )))

/** Status, attempts, steps, children and last error of an execution (`Conductor.get`; dies when it does not exist). */
export const inspect = (id: string): Effect.Effect<ExecutionInfo, never, Conductor> =>
  Effect.flatMap(Effect.service(Conductor), (conductor) => Effect.orDie(conductor.get(id)))

/** The status of an execution right now. */
export const status = (id: string): Effect.Effect<Status, never, Conductor> => Effect.map(inspect(id), (info) => info.status)

/** Attempts counted so far (suspensions give theirs back). */
export const attempts = (id: string): Effect.Effect<number, never, Conductor> => Effect.map(inspect(id), (info) => info.attempts)

/** The durable operations recorded so far, by name. */
export const steps = (id: string): Effect.Effect<Readonly<Record<string, StepInfo>>, never, Conductor> =>
  Effect.map(inspect(id), (info) => Object.fromEntries(info.steps.map((step) => [step.name, step])))
