/**
 * Task contracts: a name, Schemas for payload, success and error, and the
 * execution policy. Declared once and shared by producers and workers.
 *
 * @since 0.1.0
 */
import { Duration, Effect, Layer, Schema } from "effect"
import { InvalidConfig } from "./Errors.ts"
import { Execution } from "./Execution.ts"
import { jsonCodec } from "./internal/codec.ts"
import { Registry } from "./internal/Registry.ts"

/** A schema usable in a contract: no services needed to encode or decode. */
export type AnySchema = Schema.Codec<any, any, never, never>

/** How failed attempts are retried. */
export interface RetryPolicy {
  /** `exponential` (default) doubles the delay each attempt; `fixed` keeps `base`. */
  readonly backoff?: "exponential" | "fixed" | undefined
  /** Delay after the first failed attempt. Default 1 second. */
  readonly base?: Duration.Input | undefined
  /** Upper bound of any delay. Default 1 hour. */
  readonly max?: Duration.Input | undefined
  /** Spread delays randomly between 50% and 100% of their value. Default true. */
  readonly jitter?: boolean | undefined
}

/** Options of `Task.make`. */
export interface TaskOptions<P extends AnySchema, S extends AnySchema, E extends AnySchema> {
  readonly payload: P
  /** Default `Schema.Void`. */
  readonly success?: S | undefined
  /** The typed failure callers see. Default `Schema.Never`. */
  readonly error?: E | undefined
  /** Default `"default"`. */
  readonly queue?: string | undefined
  /** Attempts in all, counting the first. Default 3. */
  readonly maxAttempts?: number | undefined
  readonly retry?: RetryPolicy | undefined
  /** Bounds one attempt: the handler is interrupted and the attempt fails. */
  readonly timeout?: Duration.Input | undefined
  /** Default priority of invocations; higher runs first. Default 0. */
  readonly priority?: number | undefined
  /**
   * How long finished executions stay readable (`get`, `result`) before
   * workers delete them, with their step records. One duration for all, or
   * one for completed executions and one for failed and cancelled ones.
   * Default: kept for good. See {@link Retention}.
   */
  readonly retention?: Duration.Input | RetentionOptions | undefined
}

/** Retention by outcome; an outcome left out is kept for good. */
export interface RetentionOptions {
  readonly completed?: Duration.Input | undefined
  /** Failed and cancelled executions. */
  readonly failed?: Duration.Input | undefined
}

/**
 * A task's retention in milliseconds; undefined keeps for good.
 *
 * - A finished execution is deleted by a worker's periodic sweep (about once
 *   a minute) once its retention has passed, and never less than a minute
 *   after it finished: whoever its finish woke (a result waiter, a parent)
 *   reads it after the commit. A child stays while its parent is unfinished.
 * - `completed: 0` keeps no completed executions: one that no caller awaits
 *   (`result` called before it finished) and that has no parent is deleted in
 *   the statement that finishes it, the cheapest way to finish; `get` and
 *   `result` then find nothing.
 * - Retention is recorded by the workers of the task when they start, and
 *   applies to every execution that finishes from then on.
 */
export interface Retention {
  readonly completedMillis: number | undefined
  readonly failedMillis: number | undefined
}

/** A task contract. Its type parameters carry payload, success and error types to every use. */
export interface Task<
  Name extends string,
  P extends AnySchema,
  S extends AnySchema,
  E extends AnySchema
> {
  readonly _tag: "Task"
  readonly name: Name
  readonly payload: P
  readonly success: S
  readonly error: E
  readonly queue: string
  readonly maxAttempts: number
  readonly retry: Required<{ [K in keyof RetryPolicy]-?: NonNullable<RetryPolicy[K]> }>
  readonly timeout: Duration.Duration | undefined
  readonly priority: number
  readonly retention: Retention
  /** @internal JSON codecs derived once from the schemas */
  readonly codecs: {
    readonly payload: AnySchema
    readonly success: AnySchema
    readonly error: AnySchema
  }
  /**
   * Registers the handler of this task in the process. The handler gets the
   * decoded payload and runs with `Execution` (durable operations) provided
   * by the worker; its other requirements come from the layer's context.
   */
  readonly toLayer: <R>(
    handler: (payload: P["Type"]) => Effect.Effect<S["Type"], E["Type"], R>
  ) => Layer.Layer<never, never, Registry | Exclude<R, Execution>>
}

/** Any task contract, whatever its types. */
export interface AnyTask extends Task<string, AnySchema, AnySchema, AnySchema> {}

/** The payload type of a task (what `invoke` takes). */
export type PayloadOf<T> = T extends Task<any, infer P, any, any> ? P["Type"] : never
/** The success type of a task. */
export type SuccessOf<T> = T extends Task<any, any, infer S, any> ? S["Type"] : never
/** The declared error type of a task. */
export type ErrorOf<T> = T extends Task<any, any, any, infer E> ? E["Type"] : never

/** Milliseconds of a retention duration; undefined for an infinite one. */
const retentionMillis = (task: string, name: string, input: Duration.Input | undefined): number | undefined => {
  if (input === undefined) return undefined
  let duration: Duration.Duration
  try {
    duration = Duration.fromInputUnsafe(input)
  } catch {
    throw new InvalidConfig({ message: `Task "${task}": ${name} is not a duration: ${String(input)}` })
  }
  const millis = Duration.toMillis(duration)
  if (Number.isNaN(millis) || millis < 0) {
    throw new InvalidConfig({ message: `Task "${task}": ${name} must not be negative, got ${String(input)}` })
  }
  return Number.isFinite(millis) ? millis : undefined
}

const retentionOf = (task: string, input: TaskOptions<any, any, any>["retention"]): Retention => {
  if (input !== null && typeof input === "object" && !Duration.isDuration(input) && !Array.isArray(input) &&
    ("completed" in input || "failed" in input || Object.keys(input).length === 0)) {
    const options = input as RetentionOptions
    return {
      completedMillis: retentionMillis(task, "retention.completed", options.completed),
      failedMillis: retentionMillis(task, "retention.failed", options.failed)
    }
  }
  const millis = retentionMillis(task, "retention", input as Duration.Input | undefined)
  return { completedMillis: millis, failedMillis: millis }
}

const positiveInt = (name: string, task: string, value: number) => {
  if (!Number.isInteger(value) || value < 1) {
    throw new InvalidConfig({ message: `Task "${task}": ${name} must be a positive integer, got ${value}` })
  }
  return value
}

/**
 * Declares a task. Throws `InvalidConfig` at declaration time for settings
 * that cannot work (an empty name, `maxAttempts` below 1).
 */
export const make = <
  const Name extends string,
  P extends AnySchema,
  S extends AnySchema = typeof Schema.Void,
  E extends AnySchema = typeof Schema.Never
>(name: Name, options: TaskOptions<P, S, E>): Task<Name, P, S, E> => {
  if (name.length === 0) throw new InvalidConfig({ message: "A task name must not be empty" })
  const success = (options.success ?? Schema.Void) as S
  const error = (options.error ?? Schema.Never) as E
  const retry = options.retry ?? {}
  const task: Task<Name, P, S, E> = {
    _tag: "Task",
    name,
    payload: options.payload,
    success,
    error,
    queue: options.queue ?? "default",
    maxAttempts: positiveInt("maxAttempts", name, options.maxAttempts ?? 3),
    retry: {
      backoff: retry.backoff ?? "exponential",
      base: retry.base ?? Duration.seconds(1),
      max: retry.max ?? Duration.hours(1),
      jitter: retry.jitter ?? true
    },
    timeout: options.timeout === undefined ? undefined : Duration.fromInputUnsafe(options.timeout),
    priority: options.priority ?? 0,
    retention: retentionOf(name, options.retention),
    codecs: {
      payload: jsonCodec(options.payload),
      success: jsonCodec(success),
      error: jsonCodec(error)
    },
    toLayer: (handler) =>
      Layer.effectDiscard(Effect.gen(function*() {
        const registry = yield* Registry
        const context = yield* Effect.context<never>()
        yield* registry.register({ task: task as unknown as AnyTask, handler: handler as never, context })
      })) as never
  }
  return task
}

/**
 * The delay before the next attempt after `attempt` failed (1-based), in
 * milliseconds. `random` is in [0, 1).
 */
export const retryDelayMillis = (task: AnyTask, attempt: number, random: number): number => {
  const base = Duration.toMillis(task.retry.base)
  const max = Duration.toMillis(task.retry.max)
  const raw = task.retry.backoff === "fixed" ? base : base * 2 ** Math.max(0, attempt - 1)
  const capped = Math.min(max, raw)
  return Math.round(task.retry.jitter ? capped * (0.5 + random / 2) : capped)
}
