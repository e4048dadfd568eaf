/**
 * What an attempt comes to: from the handler's exit and the reason it was
 * stopped (if it was), the outcome the exchange loop writes.
 */
import { Cause, Exit } from "effect"
import { type AnyTask, retryDelayMillis } from "../../Task.ts"
import { encodeJsonExit } from "../codec.ts"
import type { AttemptOutcome, ClaimedExecution } from "../Store.ts"

/** Why a running attempt was stopped. */
export type Stop =
  | { readonly _tag: "Cancel"; readonly reason: string }
  | { readonly _tag: "Suspend"; readonly until: number | undefined }
  | { readonly _tag: "Shutdown" }
  | { readonly _tag: "Lost" }

/**
 * The outcome of an attempt, computed synchronously (encoding needs no
 * services). `discard`: set on a completion, which its store may then delete
 * outright (a task that keeps no completed executions).
 */
export const outcomeOf = (
  claimed: ClaimedExecution,
  task: AnyTask,
  exit: Exit.Exit<unknown, unknown>,
  stopped: Stop | undefined,
  discard?: { readonly steps: boolean } | undefined
): AttemptOutcome | undefined => {
  const id = claimed.id
  // A handler that finished before a suspend or shutdown could stop it keeps its result.
  const settledFirst = Exit.isSuccess(exit) && (stopped?._tag === "Suspend" || stopped?._tag === "Shutdown")
  if (stopped !== undefined && !settledFirst) {
    switch (stopped._tag) {
      case "Lost":
        return undefined
      case "Cancel":
        return { _tag: "Cancelled", id, reason: stopped.reason }
      case "Suspend":
        return { _tag: "Suspended", id, until: stopped.until }
      case "Shutdown":
        return { _tag: "Released", id }
    }
  }
  if (Exit.isSuccess(exit)) {
    const encoded = encodeJsonExit(task.codecs.success, exit.value)
    if (Exit.isSuccess(encoded)) {
      return discard === undefined ? { _tag: "Completed", id, result: encoded.value } : { _tag: "Completed", id, result: encoded.value, discard }
    }
    return {
      _tag: "Failed",
      id,
      error: { _tag: "Defect", message: `The handler's result does not match the success schema of ${task.name}: ${Cause.pretty(encoded.cause)}` },
      retryDelayMillis: retryDelay(claimed, task)
    }
  }
  const retry = retryDelay(claimed, task)
  const failure = exit.cause.reasons.find((reason) => reason._tag === "Fail")
  if (failure !== undefined) {
    const encoded = encodeJsonExit(task.codecs.error, failure.error)
    if (Exit.isSuccess(encoded)) {
      return { _tag: "Failed", id, error: { _tag: "Typed", value: encoded.value }, retryDelayMillis: retry }
    }
  }
  return { _tag: "Failed", id, error: { _tag: "Defect", message: Cause.pretty(exit.cause) }, retryDelayMillis: retry }
}

/** When a failed attempt runs again: undefined after the last attempt. */
const retryDelay = (claimed: ClaimedExecution, task: AnyTask): number | undefined =>
  claimed.attempt < claimed.maxAttempts ? retryDelayMillis(task, claimed.attempt, Math.random()) : undefined
