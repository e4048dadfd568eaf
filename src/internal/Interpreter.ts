import { Cause, Deferred, Duration, Effect, Exit, Schema } from "effect"
import { decodeOutcome, encodePayload } from "../Conductor.ts"
import { ChildTimedOut, DuplicateStepName, StepMismatch, type StoreError } from "../Errors.ts"
import type { AnySchema, AnyTask } from "../Task.ts"
import { decodeJsonExit, encodeJsonExit, jsonCodec } from "./codec.ts"
import type { CancelRequested, ChildRecord, NewChild, StepRecord, StoreService } from "./Store.ts"
import { uuid } from "./uuid.ts"

/**
 * Interprets the durable operations of one attempt against the store: a
 * recorded operation is replayed from its record; a new one runs and is
 * recorded before its value reaches the handler. When every branch of the
 * handler is blocked (on a long sleep or an unfinished child) the attempt
 * suspends: the worker interrupts the handler and parks the execution until
 * its earliest deadline or until a child wakes it.
 */
export interface Interpreter {
  readonly step: <A, E, R>(
    name: string,
    effect: Effect.Effect<A, E, R>,
    schemas: { readonly success?: AnySchema | undefined; readonly error?: AnySchema | undefined }
  ) => Effect.Effect<A, E, R>
  /** `wake` maps the store's now to the wake time (both store-clock ms). */
  readonly sleep: (name: string, wake: (now: number) => number) => Effect.Effect<void>
  readonly invoke: (
    name: string,
    task: AnyTask,
    payload: unknown,
    options: { readonly timeout?: Duration.Input | undefined }
  ) => Effect.Effect<unknown, unknown>
}

/** What the worker gives the interpreter of one attempt. */
export interface InterpreterContext {
  readonly executionId: string
  readonly attempt: number
  /** The execution's first claim: there are no recorded steps to read. */
  readonly fresh: boolean
  readonly store: StoreService
  readonly recordStep: (
    record: Omit<StepRecord, "recordedAt">
  ) => Effect.Effect<StepRecord | CancelRequested | undefined, StoreError>
  readonly startChild: (child: NewChild) => Effect.Effect<ChildRecord | CancelRequested | undefined, StoreError>
  /** The store's clock, read locally (the worker keeps the offset). */
  readonly now: Effect.Effect<number>
  /** Sleeps up to this long are awaited in-process; longer ones suspend. */
  readonly inlineSleepMillis: number
  /** Ends the attempt as suspended until `until` (or until woken). */
  readonly suspend: (until: number | undefined) => Effect.Effect<void>
  /** Ends the attempt because the lease is gone: nothing more may be written. */
  readonly leaseLost: Effect.Effect<never>
  /** Ends the attempt as cancelled: a cancel was requested that its signal has not brought yet. */
  readonly cancelled: (reason: string) => Effect.Effect<never>
}

const JsonCodec: AnySchema = jsonCodec(Schema.Json)

export const makeInterpreter = (ctx: InterpreterContext): Interpreter => {
  let records: Map<string, StepRecord> | undefined = ctx.fresh ? new Map() : undefined
  const used = new Set<string>()
  const blocked = new Map<string, number | undefined>()
  let inFlight = 0

  // Read once per attempt, shared by concurrent branches.
  let loading: Deferred.Deferred<Map<string, StepRecord>> | undefined
  const load = Effect.suspend(() => {
    if (records !== undefined) return Effect.succeed(records)
    if (loading !== undefined) return Deferred.await(loading)
    const deferred = Deferred.makeUnsafe<Map<string, StepRecord>>()
    loading = deferred
    return Effect.orDie(ctx.store.steps(ctx.executionId)).pipe(
      Effect.map((rows) => (records = new Map(rows.map((row) => [row.name, row])))),
      Effect.onExit((exit) => Effect.sync(() => {
        if (exit._tag === "Failure") loading = undefined
        Deferred.doneUnsafe(deferred, exit)
      }))
    )
  })

  const claimName = (name: string, kind: StepRecord["kind"]) =>
    Effect.flatMap(load, (map) => {
      if (used.has(name)) {
        return Effect.die(new DuplicateStepName({
          executionId: ctx.executionId,
          step: name,
          message: `Durable operation name "${name}" is used twice in execution ${ctx.executionId}; names must be unique`
        }))
      }
      used.add(name)
      const record = map.get(name)
      if (record !== undefined && record.kind !== kind) {
        return Effect.die(new StepMismatch({
          executionId: ctx.executionId,
          step: name,
          message: `"${name}" was recorded as a ${record.kind} but is now replayed as a ${kind}: the handler changed`
        }))
      }
      return Effect.succeed(record)
    })

  const record = (rec: Omit<StepRecord, "recordedAt">) =>
    Effect.flatMap(Effect.orDie(ctx.recordStep(rec)), (stored) => {
      if (stored === undefined) return ctx.leaseLost
      // Cancelled before its signal reached this worker: nothing more is recorded.
      if ("_tag" in stored) return ctx.cancelled(stored.reason)
      records?.set(stored.name, stored)
      return Effect.succeed(stored)
    })

  /** Tracks durable work in progress: the attempt only suspends when none is. */
  const tracked = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
    Effect.suspend(() => {
      inFlight++
      return Effect.ensuring(effect, Effect.suspend(() => {
        inFlight--
        return checkSuspend
      }))
    })

  // Let other branches reach their own durable operations before deciding.
  const checkSuspend: Effect.Effect<void> = Effect.suspend(() => {
    if (blocked.size === 0 || inFlight > 0) return Effect.void
    return Effect.forkDetach(
      Effect.gen(function*() {
        for (let i = 0; i < 5; i++) yield* Effect.yieldNow
        if (blocked.size === 0 || inFlight > 0) return
        let until: number | undefined
        for (const deadline of blocked.values()) {
          if (deadline !== undefined && (until === undefined || deadline < until)) until = deadline
        }
        yield* ctx.suspend(until)
      })
    ).pipe(Effect.asVoid)
  })

  const block = (name: string, until: number | undefined): Effect.Effect<never> =>
    Effect.suspend(() => {
      blocked.set(name, until)
      return Effect.andThen(checkSuspend, Effect.never)
    }).pipe(Effect.ensuring(Effect.sync(() => blocked.delete(name))))

  /** Steps store JSON: values go through the JSON codec of their schema (plain JSON without one). */
  const codecsOf = (schemas: { readonly success?: AnySchema | undefined; readonly error?: AnySchema | undefined }) => ({
    success: schemas.success === undefined ? JsonCodec : jsonCodec(schemas.success),
    error: schemas.error === undefined ? JsonCodec : jsonCodec(schemas.error)
  })

  // Contract schemas need no services, so values are encoded and decoded synchronously.
  const orDie = <A>(exit: Exit.Exit<A, unknown>): Effect.Effect<A> =>
    Exit.isSuccess(exit) ? Effect.succeed(exit.value) : Effect.die(Cause.squash(exit.cause))

  const replayStep = (rec: StepRecord, codecs: { readonly success: AnySchema; readonly error: AnySchema }) =>
    rec.error !== undefined
      ? Effect.flatMap(orDie(decodeJsonExit(codecs.error, rec.error)), Effect.fail)
      : orDie(decodeJsonExit(codecs.success, rec.value))

  const step: Interpreter["step"] = (name, effect, schemas) =>
    Effect.flatMap(claimName(name, "step"), (existing) => {
      const codecs = codecsOf(schemas)
      if (existing !== undefined) return replayStep(existing, codecs) as Effect.Effect<any, any>
      const isDeclared = schemas.error === undefined ? () => false : Schema.is(schemas.error)
      return tracked(Effect.matchCauseEffect(effect, {
        onSuccess: (value) =>
          Effect.flatMap(
            orDie(encodeJsonExit(codecs.success, schemas.success === undefined && value === undefined ? null : value)),
            (encoded) =>
              Effect.flatMap(
                record({ name, kind: "step", value: encoded, error: undefined, attempt: ctx.attempt }),
                (stored) => replayStep(stored, codecs)
              )
          ),
        onFailure: (cause) => {
          const failure = cause.reasons.find((reason) => reason._tag === "Fail")
          if (failure !== undefined && isDeclared(failure.error)) {
            return Effect.flatMap(orDie(encodeJsonExit(codecs.error, failure.error)), (encoded) =>
              Effect.flatMap(
                record({ name, kind: "step", value: null, error: encoded, attempt: ctx.attempt }),
                (stored) => replayStep(stored, codecs)
              ))
          }
          return Effect.failCause(cause)
        }
      }))
    }) as never

  const sleep: Interpreter["sleep"] = (name, wake) =>
    Effect.gen(function*() {
      const existing = yield* claimName(name, "sleep")
      const now = yield* ctx.now
      const until = existing !== undefined
        ? Number(existing.value)
        : Number((yield* tracked(record({ name, kind: "sleep", value: wake(now), error: undefined, attempt: ctx.attempt }))).value)
      const remaining = until - (yield* ctx.now)
      if (remaining <= 0) return
      if (remaining <= ctx.inlineSleepMillis) return yield* Effect.sleep(Duration.millis(remaining))
      return yield* block(name, until)
    })

  const invoke: Interpreter["invoke"] = (name, task, payload, options) =>
    Effect.gen(function*() {
      const existing = yield* claimName(name, "child")
      let child: ChildRecord
      if (existing !== undefined) {
        // Stored as JSON: a missing deadline is null there.
        const stored = existing.value as { readonly id: string; readonly deadline?: number | null }
        child = { id: stored.id, deadline: stored.deadline ?? undefined }
      } else {
        const encoded = yield* encodePayload(task, payload)
        const started = yield* tracked(Effect.orDie(ctx.startChild({
          id: uuid(),
          task: task.name,
          queue: task.queue,
          payload: encoded,
          priority: task.priority,
          maxAttempts: task.maxAttempts,
          parentId: ctx.executionId,
          parentStep: name,
          attempt: ctx.attempt,
          timeoutMillis: options.timeout === undefined ? undefined : Duration.toMillis(options.timeout)
        })))
        if (started === undefined) return yield* ctx.leaseLost
        // Cancelled before its signal reached this worker: no child starts.
        if ("_tag" in started) return yield* ctx.cancelled(started.reason)
        child = started
      }
      const [outcome] = yield* Effect.orDie(ctx.store.outcomes([child.id]))
      if (outcome !== undefined) return yield* decodeOutcome(task, outcome)
      if (child.deadline !== undefined && child.deadline <= (yield* ctx.now)) {
        yield* Effect.orDie(ctx.store.cancel(child.id, `timed out waiting in ${ctx.executionId} (${name})`))
        // It may have finished just before the cancel.
        const [late] = yield* Effect.orDie(ctx.store.outcomes([child.id]))
        if (late !== undefined && late.status !== "cancelled") return yield* decodeOutcome(task, late)
        return yield* new ChildTimedOut({
          step: name,
          childId: child.id,
          task: task.name,
          message: `Child ${task.name} ${child.id} (step "${name}") did not finish before its timeout`
        })
      }
      return yield* block(name, child.deadline)
    })

  return { step, sleep, invoke }
}
