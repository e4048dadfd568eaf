/**
 * Errors that effect-conductor reports to callers. Each carries the data a
 * caller needs to act on it (task, execution id, attempt).
 *
 * @since 0.1.0
 */
import { Schema } from "effect"

/** A payload did not match its task's schema on invoke; nothing was written. */
export class InvalidPayload extends Schema.TaggedError<InvalidPayload>()("InvalidPayload", {
  task: Schema.String,
  message: Schema.String
}) {}

/** No execution with this id exists (or it was removed by retention). */
export class ExecutionNotFound extends Schema.TaggedError<ExecutionNotFound>()("ExecutionNotFound", {
  id: Schema.String,
  message: Schema.String
}) {}

/**
 * An execution failed for good with something other than its task's declared
 * error: a defect, a timeout, or a stored payload that no longer decodes.
 * `error` is the readable form of the last failure.
 */
export class ExecutionFailed extends Schema.TaggedError<ExecutionFailed>()("ExecutionFailed", {
  id: Schema.String,
  task: Schema.String,
  attempts: Schema.Number,
  error: Schema.Unknown,
  message: Schema.String
}) {}

/** An execution was cancelled before it finished. */
export class ExecutionCancelled extends Schema.TaggedError<ExecutionCancelled>()("ExecutionCancelled", {
  id: Schema.String,
  task: Schema.String,
  reason: Schema.String,
  message: Schema.String
}) {}

/** `result` was asked for an execution that belongs to another task. */
export class TaskMismatch extends Schema.TaggedError<TaskMismatch>()("TaskMismatch", {
  id: Schema.String,
  expected: Schema.String,
  actual: Schema.String,
  message: Schema.String
}) {}

/** The backing store failed (connection lost, query error). Retrying may help. */
export class StoreError extends Schema.TaggedError<StoreError>()("StoreError", {
  message: Schema.String,
  cause: Schema.Defect()
}) {}

/** The database holds migrations this code does not know: it is newer than the code. */
export class SchemaTooNew extends Schema.TaggedError<SchemaTooNew>()("SchemaTooNew", {
  schema: Schema.String,
  unknown: Schema.Array(Schema.String),
  message: Schema.String
}) {}

/** Configuration that cannot work (a bad schema name, a non-positive concurrency). */
export class InvalidConfig extends Schema.TaggedError<InvalidConfig>()("InvalidConfig", {
  message: Schema.String
}) {}

/** One attempt ran longer than its task's `timeout` and was interrupted. */
export class AttemptTimedOut extends Schema.TaggedError<AttemptTimedOut>()("AttemptTimedOut", {
  task: Schema.String,
  timeoutMillis: Schema.Number,
  message: Schema.String
}) {}

/** A durable `invoke` waited longer than its `timeout`; the child was cancelled. */
export class ChildTimedOut extends Schema.TaggedError<ChildTimedOut>()("ChildTimedOut", {
  step: Schema.String,
  childId: Schema.String,
  task: Schema.String,
  message: Schema.String
}) {}

/** Two durable operations of one execution used the same name. A defect: fix the handler. */
export class DuplicateStepName extends Schema.TaggedError<DuplicateStepName>()("DuplicateStepName", {
  executionId: Schema.String,
  step: Schema.String,
  message: Schema.String
}) {}

/** A name was recorded by one kind of durable operation and replayed as another (the handler changed). */
export class StepMismatch extends Schema.TaggedError<StepMismatch>()("StepMismatch", {
  executionId: Schema.String,
  step: Schema.String,
  message: Schema.String
}) {}
