import { assert, layer } from "@effect/vitest"
import { Effect, Layer, Schema } from "effect"
import { Conductor } from "../src/Conductor.ts"
import * as Task from "../src/Task.ts"
import { pgStack, withWorker } from "./support/stack.ts"

const Echo = Task.make("echo", {
  payload: Schema.Struct({ text: Schema.String }),
  success: Schema.Struct({ upper: Schema.String })
})

const EchoLive = Echo.toLayer((payload) => Effect.succeed({ upper: payload.text.toUpperCase() }))

layer(pgStack(), { excludeTestServices: true })("worker on postgres", (it) => {
  it.effect("runs invoked tasks and returns typed results", () =>
    Effect.gen(function*() {
      const conductor = yield* Conductor
      const results = yield* withWorker(EchoLive, { concurrency: 4 }, Effect.gen(function*() {
        const ids = yield* Effect.forEach(["a", "b", "c"], (text) => conductor.invoke(Echo, { text }))
        return yield* Effect.forEach(ids, (id) => conductor.result(Echo, id))
      }))
      assert.deepStrictEqual(results.map((r) => r.upper), ["A", "B", "C"])
    }))
})
void Layer
