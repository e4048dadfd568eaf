/**
 * The running execution, as seen from inside a handler.
 *
 * @since 0.1.0
 */
import { Context } from "effect"

/**
 * What a handler can know about the execution it runs in. Provided by the
 * worker for every attempt; durable operations (`Durable.step`, ...) use it.
 */
export class Execution extends Context.Service<Execution, {
  readonly id: string
  readonly task: string
  /** 1 for the first attempt. */
  readonly attempt: number
  readonly maxAttempts: number
  readonly parentId: string | undefined
  /** Aborted when the attempt is interrupted (cancel, timeout, shutdown), for code that is not Effect. */
  readonly signal: AbortSignal
  /** @internal the durable-operation interpreter of this attempt */
  readonly ops: import("./internal/Interpreter.ts").Interpreter
}>()("effect-conductor/Execution") {}
