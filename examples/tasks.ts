/**
 * Task contracts shared by the worker and the invoker: names, schemas and
 * policies only, no handler code.
 */
import { Schema } from "effect"
import { Task } from "../src/index.ts"

/** A typed failure callers can catch. */
export class NameRejected extends Schema.TaggedError<NameRejected>()("NameRejected", {
  name: Schema.String,
  reason: Schema.String
}) {}

export const Greet = Task.make("greet", {
  payload: Schema.Struct({ name: Schema.String }),
  success: Schema.Struct({ greeting: Schema.String }),
  error: NameRejected,
  maxAttempts: 3,
  retry: { base: "100 millis" }
})

/** The child of the workflow: doubles a number. */
export const Double = Task.make("double", {
  payload: Schema.Struct({ value: Schema.Number }),
  success: Schema.Number
})

/** A multi-step workflow: validate, transform (via a child), sleep, save. */
export const ProcessNumber = Task.make("process-number", {
  payload: Schema.Struct({ input: Schema.String }),
  success: Schema.Struct({ input: Schema.String, output: Schema.Number, savedAt: Schema.String }),
  error: NameRejected,
  retry: { base: "100 millis" }
})
