/**
 * Durable operations for use inside task handlers. Each is recorded in the
 * store under its name, so a handler that is retried, resumed after a crash
 * or woken from a sleep replays finished operations instead of redoing them.
 * Names must be unique within an execution; code outside these operations
 * may run again on replay.
 *
 * @since 0.1.0
 */
import { Duration, Effect, type Schema } from "effect"
import type { ChildTimedOut, ExecutionCancelled, ExecutionFailed } from "./Errors.ts"
import { Execution } from "./Execution.ts"
import type { AnySchema, Task } from "./Task.ts"

/** Values that survive a JSON round trip unchanged (what a step without a schema may return). */
export type Json = string | number | boolean | null | ReadonlyArray<Json> | { readonly [key: string]: Json }

/**
 * Runs `effect` once per execution and commits its result before returning
 * it; on replay returns the committed result without running `effect`.
 *
 * Without `success`, the value must be JSON (checked by the compiler), so a
 * `Date` never silently comes back as a string; pass a schema for anything
 * else. A step of `void` is recorded as `null`. A failure that `error` declares is recorded too and replayed as the
 * same failure; any other failure or defect is not recorded and fails the
 * attempt (the task's retry policy applies).
 */
export const step: {
  <A extends Json | void, E, R>(name: string, effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R | Execution>
  <S extends AnySchema, E, R, ES extends AnySchema = typeof Schema.Never>(
    name: string,
    effect: Effect.Effect<S["Type"], E, R>,
    options: { readonly success: S; readonly error?: ES | undefined }
  ): Effect.Effect<S["Type"], E, R | Execution>
  <A extends Json | void, E, R, ES extends AnySchema>(
    name: string,
    effect: Effect.Effect<A, E, R>,
    options: { readonly error: ES }
  ): Effect.Effect<A, E, R | Execution>
} = (
  name: string,
  effect: Effect.Effect<any, any, any>,
  options?: { readonly success?: AnySchema | undefined; readonly error?: AnySchema | undefined }
) => Effect.flatMap(Effect.service(Execution), (execution) => execution.ops.step(name, effect, options ?? {})) as never

/**
 * Suspends the handler for `duration`, durably: the wake time is recorded
 * under `name`, so a resumed execution does not restart the sleep. Short
 * sleeps are awaited in the worker; long ones park the execution in the store
 * and free the worker.
 */
export const sleep = (name: string, duration: Duration.Input): Effect.Effect<void, never, Execution> =>
  Effect.flatMap(Effect.service(Execution), (execution) =>
    execution.ops.sleep(name, (now) => now + durationMillis(duration)))

/** Like `sleep`, until a point in time. */
export const sleepUntil = (name: string, until: Date | number): Effect.Effect<void, never, Execution> =>
  Effect.flatMap(Effect.service(Execution), (execution) =>
    execution.ops.sleep(name, () => (typeof until === "number" ? until : until.getTime())))

/**
 * Starts a child execution once per (parent, name) and returns its decoded
 * success. The parent suspends while the child runs (without using up an
 * attempt). A child that fails for good fails here with its typed error, or
 * `ExecutionFailed` / `ExecutionCancelled`; past `timeout` the child is
 * cancelled and this fails with `ChildTimedOut`. Concurrent invokes
 * (`Effect.all(..., { concurrency })`) start their children in one statement.
 */
export const invoke = <const Name extends string, P extends AnySchema, S extends AnySchema, E extends AnySchema>(
  name: string,
  task: Task<Name, P, S, E>,
  payload: P["Type"],
  options: { readonly timeout?: Duration.Input | undefined } = {}
): Effect.Effect<S["Type"], E["Type"] | ExecutionFailed | ExecutionCancelled | ChildTimedOut, Execution> =>
  Effect.flatMap(Effect.service(Execution), (execution) =>
    execution.ops.invoke(name, task as never, payload, options)) as never

/** The running execution's id, task, attempt, parent and abort signal. */
export const execution: Effect.Effect<Execution["Service"], never, Execution> = Effect.service(Execution)

const durationMillis = (input: Duration.Input) => Duration.toMillis(input)
