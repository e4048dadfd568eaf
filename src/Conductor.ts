/**
 * The client: invoke tasks, await their results, inspect and cancel executions.
 *
 * @since 0.1.0
 */
import { Cause, Context, Deferred, Duration, Effect, Exit, Layer, PubSub, Queue, Scope } from "effect"
import {
  ExecutionCancelled,
  ExecutionFailed,
  ExecutionNotFound,
  InvalidPayload,
  type StoreError,
  TaskMismatch
} from "./Errors.ts"
import { decodeJson, encodeJsonExit } from "./internal/codec.ts"
import { warn } from "./internal/log.ts"
import { Registry } from "./internal/Registry.ts"
import type { ErrorRecord, ExecutionRow, NewExecution, Outcome, Signal, Status, StepRecord } from "./internal/Store.ts"
import { Store } from "./internal/Store.ts"
import { uuid } from "./internal/uuid.ts"
import type { AnySchema, AnyTask, Task } from "./Task.ts"

/** Options of one invocation. */
export interface InvokeOptions {
  /**
   * While an execution of the same task with this key is unfinished (pending,
   * scheduled, running, waiting), invoking again returns its id and writes
   * nothing. Once it has finished, the key is free again.
   */
  readonly dedupeKey?: string | undefined
  /** Higher runs first; default the task's priority (0). */
  readonly priority?: number | undefined
  /** Run no earlier than this time. */
  readonly runAt?: Date | number | undefined
  /** Run no earlier than this long from now (the store's now). Ignored when `runAt` is set. */
  readonly delay?: Duration.Input | undefined
}

/** A durable operation recorded in an execution, as `get` shows it. */
export interface StepInfo {
  readonly name: string
  readonly kind: "step" | "sleep" | "child"
  readonly outcome: "success" | "failure" | "sleep" | "child"
  /** step: the stored success or failure (JSON); sleep: the wake time; child: { id, deadline } */
  readonly value: unknown
  readonly attempt: number
  readonly recordedAt: Date
}

/** What `get` returns: where an execution is and what it did. */
export interface ExecutionInfo {
  readonly id: string
  readonly task: string
  readonly queue: string
  readonly status: Status
  readonly priority: number
  readonly attempts: number
  readonly maxAttempts: number
  readonly runAt: Date | undefined
  readonly createdAt: Date
  readonly startedAt: Date | undefined
  readonly finishedAt: Date | undefined
  readonly dedupeKey: string | undefined
  readonly parentId: string | undefined
  /** The last failure (or the cancellation), in its stored JSON form. */
  readonly lastError: ErrorRecord | undefined
  readonly steps: ReadonlyArray<StepInfo>
  readonly children: ReadonlyArray<{ readonly id: string; readonly task: string; readonly status: Status; readonly step: string | undefined }>
}

/** How an awaited execution can end, other than with its success. */
export type ResultError<E> = E | ExecutionFailed | ExecutionCancelled | ExecutionNotFound | TaskMismatch | StoreError

/** The client service. */
export class Conductor extends Context.Service<Conductor, {
  /**
   * Writes one execution and returns its id. The payload is encoded with the
   * task's schema first; one that does not fit fails with `InvalidPayload`
   * and nothing is written. Inside the caller's `SqlClient` transaction the
   * write joins it, so the execution exists if and only if it commits.
   */
  readonly invoke: <const Name extends string, P extends AnySchema, S extends AnySchema, E extends AnySchema>(
    task: Task<Name, P, S, E>,
    payload: P["Type"],
    options?: InvokeOptions
  ) => Effect.Effect<string, InvalidPayload | StoreError>
  /** Writes many executions of one task in one statement; ids in input order. */
  readonly invokeMany: <const Name extends string, P extends AnySchema, S extends AnySchema, E extends AnySchema>(
    task: Task<Name, P, S, E>,
    items: ReadonlyArray<{ readonly payload: P["Type"]; readonly options?: InvokeOptions | undefined }>
  ) => Effect.Effect<ReadonlyArray<string>, InvalidPayload | StoreError>
  /**
   * Waits for an execution to end (woken by the store's signals, not by
   * polling) and returns its decoded success, or fails with the task's typed
   * error, `ExecutionFailed` (defects, timeouts), or `ExecutionCancelled`.
   */
  readonly result: <const Name extends string, P extends AnySchema, S extends AnySchema, E extends AnySchema>(
    task: Task<Name, P, S, E>,
    id: string
  ) => Effect.Effect<S["Type"], ResultError<E["Type"]>>
  /** Status, attempts, timestamps, last error, recorded steps and children of an execution. */
  readonly get: (id: string) => Effect.Effect<ExecutionInfo, ExecutionNotFound | StoreError>
  /**
   * Cancels an execution and its unfinished descendants. Returns true when it
   * was cancelled (or, when running, its worker was told to stop it), false
   * when it had already finished. A cancel and a completion race: whichever
   * commits first wins.
   */
  readonly cancel: (id: string, options?: { readonly reason?: string | undefined }) => Effect.Effect<boolean, ExecutionNotFound | StoreError>
}>()("effect-conductor/Conductor") {
  /**
   * The client over the `Store` in context. Also provides the process's
   * handler registry, which `Task.toLayer` layers and workers use.
   */
  static readonly layer: Layer.Layer<Conductor | Registry, never, Store> = Layer.effectContext(
    Effect.gen(function*() {
      const conductor = yield* makeConductor
      const registry = yield* Layer.build(Registry.layer)
      return Context.add(registry, Conductor, conductor)
    })
  )
}

const toDate = (ms: number | undefined) => (ms === undefined ? undefined : new Date(ms))

const stepInfo = (step: StepRecord): StepInfo => ({
  name: step.name,
  kind: step.kind,
  outcome: step.kind === "step" ? (step.error === undefined ? "success" : "failure") : step.kind,
  value: step.kind === "sleep"
    ? new Date(Number(step.value))
    : step.kind === "step" && step.error !== undefined
    ? step.error
    : step.value,
  attempt: step.attempt,
  recordedAt: new Date(step.recordedAt)
})

/** Builds one execution row from a task, an encoded payload and invoke options. */
export const newExecution = (task: AnyTask, payload: unknown, options: InvokeOptions | undefined): NewExecution => ({
  id: uuid(),
  task: task.name,
  queue: task.queue,
  payload,
  priority: options?.priority ?? task.priority,
  maxAttempts: task.maxAttempts,
  runAt: options?.runAt === undefined ? undefined : typeof options.runAt === "number" ? options.runAt : options.runAt.getTime(),
  delayMillis: options?.delay === undefined ? undefined : Duration.toMillis(options.delay),
  dedupeKey: options?.dedupeKey
})

/** Encodes a payload with the task's schema, failing with `InvalidPayload`. */
export const encodePayload = (task: AnyTask, payload: unknown): Effect.Effect<unknown, InvalidPayload> => {
  // Synchronous: contract schemas need no services, and invokeMany encodes thousands at a time.
  const exit = encodeJsonExit(task.codecs.payload, payload)
  return Exit.isSuccess(exit) ? Effect.succeed(exit.value) : Effect.fail(
    new InvalidPayload({
      task: task.name,
      message: `Invalid payload for task "${task.name}": ${String((Cause.squash(exit.cause) as Error).message ?? Cause.pretty(exit.cause))}`
    })
  )
}

/**
 * Turns a stored outcome into the caller's result: the decoded success, the
 * decoded typed error, or ExecutionFailed / ExecutionCancelled.
 */
export const decodeOutcome = (task: AnyTask, outcome: Outcome): Effect.Effect<unknown, unknown> => {
  switch (outcome.status) {
    case "completed":
      return Effect.mapError(decodeJson(task.codecs.success, outcome.result ?? null), (error) =>
        new ExecutionFailed({
          id: outcome.id,
          task: task.name,
          attempts: outcome.attempts,
          error: outcome.result,
          message: `The stored result of ${task.name} ${outcome.id} no longer decodes: ${error.message}`
        }))
    case "cancelled":
      return Effect.fail(
        new ExecutionCancelled({
          id: outcome.id,
          task: task.name,
          reason: outcome.error?._tag === "Cancelled" ? outcome.error.reason : "cancelled",
          message: `${task.name} ${outcome.id} was cancelled` +
            (outcome.error?._tag === "Cancelled" ? `: ${outcome.error.reason}` : "")
        })
      )
    case "failed": {
      const error = outcome.error
      const failed = (message: string) =>
        new ExecutionFailed({
          id: outcome.id,
          task: task.name,
          attempts: outcome.attempts,
          error: error?._tag === "Defect" ? error.message : error,
          message
        })
      if (error?._tag === "Typed") {
        return Effect.flatMap(
          Effect.mapError(decodeJson(task.codecs.error, error.value), (e) =>
            failed(`${task.name} ${outcome.id} failed with an error that no longer decodes: ${e.message}`)),
          Effect.fail
        )
      }
      return Effect.fail(failed(
        `${task.name} ${outcome.id} failed after ${outcome.attempts} attempt(s): ` +
          (error?._tag === "Defect" ? error.message : "unknown error")
      ))
    }
  }
}

const makeConductor = Effect.gen(function*() {
  const store = yield* Store
  const waiters = yield* makeWaiters

  const insertAll = (task: AnyTask, items: ReadonlyArray<{ readonly payload: unknown; readonly options?: InvokeOptions | undefined }>) =>
    Effect.gen(function*() {
      const rows: Array<NewExecution> = []
      for (const item of items) {
        const encoded = yield* encodePayload(task, item.payload)
        rows.push(newExecution(task, encoded, item.options))
      }
      const results = yield* store.insert(rows)
      return results.map((r) => r.id)
    })

  const invoke: Conductor["Service"]["invoke"] = (task, payload, options) =>
    Effect.map(insertAll(task as unknown as AnyTask, [{ payload, options }]), (ids) => ids[0]!)

  const invokeMany: Conductor["Service"]["invokeMany"] = (task, items) => insertAll(task as unknown as AnyTask, items)

  const result: Conductor["Service"]["result"] = (task, id) =>
    Effect.gen(function*() {
      const outcome = yield* waiters.await(id)
      if (outcome.task !== task.name) {
        return yield* new TaskMismatch({
          id,
          expected: task.name,
          actual: outcome.task,
          message: `Execution ${id} belongs to task "${outcome.task}", not "${task.name}"`
        })
      }
      return yield* decodeOutcome(task as unknown as AnyTask, outcome)
    }) as never

  const get: Conductor["Service"]["get"] = (id) =>
    Effect.gen(function*() {
      const row = yield* store.get(id)
      if (row === undefined) return yield* notFound(id)
      const [steps, children] = yield* Effect.all([store.steps(id), store.children(id)], { concurrency: 2 })
      return info(row, steps, children)
    })

  const cancel: Conductor["Service"]["cancel"] = (id, options) =>
    Effect.gen(function*() {
      const outcome = yield* store.cancel(id, options?.reason ?? "cancelled")
      if (outcome === "not-found") return yield* notFound(id)
      return outcome === "cancelled" || outcome === "requested"
    })

  return Conductor.of({ invoke, invokeMany, result, get, cancel })
})

const notFound = (id: string) => new ExecutionNotFound({ id, message: `No execution with id ${id}` })

const info = (row: ExecutionRow, steps: ReadonlyArray<StepRecord>, children: ReadonlyArray<ExecutionRow>): ExecutionInfo => ({
  id: row.id,
  task: row.task,
  queue: row.queue,
  status: row.status,
  priority: row.priority,
  attempts: row.attempts,
  maxAttempts: row.maxAttempts,
  runAt: toDate(row.runAt),
  createdAt: new Date(row.createdAt),
  startedAt: toDate(row.startedAt),
  finishedAt: toDate(row.finishedAt),
  dedupeKey: row.dedupeKey,
  parentId: row.parentId,
  lastError: row.error,
  steps: [...steps].sort((a, b) => a.recordedAt - b.recordedAt).map(stepInfo),
  children: children.map((child) => ({ id: child.id, task: child.task, status: child.status, step: child.parentStep }))
})

/**
 * Everyone in this process awaiting results shares one subscription and one
 * checker. A check marks the newly awaited ids as awaited, so that their
 * finish will name them in a Finished signal, and reads their outcomes, in
 * one query; it asks once which newly awaited ids do not exist, however many
 * callers wait. The ids a Finished signal names were marked and are finished:
 * they are only read (a plain read, where a mark is an UPDATE in a write
 * transaction). A Finished signal without ids, a reconnect or the slow safety
 * tick marks and reads every awaited id.
 */
/** After a check that failed (the database unreachable a moment), the next one. */
const RETRY_CHECK = "1 second"

const makeWaiters = Effect.gen(function*() {
  const store = yield* Store
  interface Waiting {
    readonly deferreds: Set<Deferred.Deferred<Outcome, ExecutionNotFound | StoreError>>
    /** Known to exist (or to have existed): no need to ask again. */
    verified: boolean
  }
  const scope = yield* Effect.scope
  const pending = new Map<string, Waiting>()
  /** Ids to mark and read in the next check; `all` makes it mark and read every awaited id. */
  const due = new Set<string>()
  /** Ids a Finished signal named: marked and finished, so only read. */
  const named = new Set<string>()
  let all = false
  const settle = (id: string, result: Effect.Effect<Outcome, ExecutionNotFound>) => {
    const waiting = pending.get(id)
    pending.delete(id)
    if (waiting) for (const deferred of waiting.deferreds) Deferred.doneUnsafe(deferred, result)
  }

  const check = Effect.gen(function*() {
    const ids = all ? [...pending.keys()] : [...due].filter((id) => pending.has(id))
    const reads = all ? [] : [...named].filter((id) => pending.has(id) && !due.has(id))
    all = false
    due.clear()
    named.clear()
    if (reads.length > 0) {
      for (const outcome of yield* store.outcomes(reads)) settle(outcome.id, Effect.succeed(outcome))
    }
    if (ids.length === 0) return
    const { busy, outcomes } = yield* store.awaitOutcomes(ids)
    for (const outcome of outcomes) settle(outcome.id, Effect.succeed(outcome))
    if (busy.length > 0) {
      // Rows held by another statement (most likely finishing them) right
      // now: mark them once that statement is done.
      for (const id of busy) due.add(id)
      yield* Effect.forkIn(Effect.delay(requestCheck, "10 millis"), scope)
    }
    const unverified = ids.filter((id) => pending.get(id)?.verified === false)
    if (unverified.length === 0) return
    const unknown = new Set(yield* store.unknownIds(unverified))
    for (const id of unverified) {
      if (unknown.has(id)) settle(id, Effect.fail(notFound(id)))
      else {
        const waiting = pending.get(id)
        if (waiting) waiting.verified = true
      }
    }
  }).pipe(Effect.catch((error) =>
    Effect.andThen(
      warn("reading results")(error),
      // What this check took is not settled: look at every awaited id again
      // shortly, rather than at the next safety tick.
      Effect.suspend(() => {
        all = true
        return Effect.forkIn(Effect.delay(requestCheck, RETRY_CHECK), scope)
      })
    )
  ))

  // One check at a time; requests made meanwhile fold into one more.
  const requests = yield* Queue.sliding<void>(1)
  const requestCheck = Queue.offer(requests, undefined)
  const checkAll = Effect.suspend(() => {
    all = true
    return requestCheck
  })
  yield* Effect.forever(Effect.andThen(Queue.take(requests), check)).pipe(Effect.forkScoped)
  // Signals are subscribed to by the first await: a client that only invokes
  // does not listen (and the store then holds no LISTEN connection for it).
  const onSignals = (subscription: PubSub.Subscription<Signal>) => Effect.gen(function*() {
    while (true) {
      const signal = yield* PubSub.take(subscription)
      if (signal._tag === "Reconnected" || (signal._tag === "Finished" && signal.ids === undefined)) yield* checkAll
      else if (signal._tag === "Finished" && pending.size > 0) {
        let any = false
        for (const id of signal.ids!) {
          if (pending.has(id)) {
            named.add(id)
            any = true
          }
        }
        if (any) yield* requestCheck
      }
    }
  })
  // Subscribed before the first check reads, so no signal after it is missed.
  let subscribed = false
  const subscribe = Effect.suspend(() => {
    if (subscribed) return Effect.void
    subscribed = true
    return Effect.flatMap(Scope.provide(store.signals, scope), (subscription) =>
      Effect.asVoid(Effect.forkIn(onSignals(subscription), scope)))
  })
  // Safety net for a lost notification.
  yield* checkAll.pipe(Effect.delay("5 seconds"), Effect.forever, Effect.forkScoped)

  const awaitOutcome = (id: string) =>
    Effect.gen(function*() {
      yield* subscribe
      const deferred = yield* Deferred.make<Outcome, ExecutionNotFound | StoreError>()
      let waiting = pending.get(id)
      if (!waiting) {
        waiting = { deferreds: new Set(), verified: false }
        pending.set(id, waiting)
      }
      const registered = waiting
      registered.deferreds.add(deferred)
      // Registered before the check reads, so a finish in between is not missed.
      due.add(id)
      yield* requestCheck
      return yield* Deferred.await(deferred).pipe(Effect.ensuring(Effect.sync(() => {
        registered.deferreds.delete(deferred)
        if (registered.deferreds.size === 0 && pending.get(id) === registered) pending.delete(id)
      })))
    })

  return { await: awaitOutcome }
})
