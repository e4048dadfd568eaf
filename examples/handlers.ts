/**
 * Handlers for the contracts in tasks.ts. Each is an Effect; registering it
 * is a Layer.
 */
import { Effect } from "effect"
import { Durable } from "../src/index.ts"
import { Double, Greet, NameRejected, ProcessNumber } from "./tasks.ts"

export const GreetLive = Greet.toLayer(
  Effect.fnUntraced(function*({ name }) {
    if (name.trim() === "") return yield* new NameRejected({ name, reason: "empty name" })
    return { greeting: `Hello, ${name}!` }
  })
)

export const DoubleLive = Double.toLayer(({ value }) => Effect.succeed(value * 2))

export const ProcessNumberLive = ProcessNumber.toLayer(
  Effect.fnUntraced(function*({ input }) {
    // Each step's result is committed before the handler continues; on a
    // retry or after a crash, finished steps are replayed, not re-run.
    const value = yield* Durable.step("validate", Effect.gen(function*() {
      const parsed = Number(input)
      if (!Number.isFinite(parsed)) return yield* new NameRejected({ name: input, reason: "not a number" })
      return parsed
    }), { error: NameRejected })
    // A child that failed for good (or was cancelled) is a typed error here;
    // this workflow treats it as a defect of its own.
    const doubled = yield* Durable.invoke("double", Double, { value }).pipe(Effect.orDie)
    const transformed = yield* Durable.step("transform", Effect.succeed(doubled + 10))
    yield* Durable.sleep("settle", "200 millis")
    const savedAt = yield* Durable.step("save", Effect.sync(() => new Date().toISOString()))
    return { input, output: transformed, savedAt }
  })
)
