import { assert, describe, it } from "@effect/vitest"
import { Clock, Effect, Layer, Schema } from "effect"
import { Conductor } from "../src/Conductor.ts"
import * as Durable from "../src/Durable.ts"
import * as Task from "../src/Task.ts"
import * as TestConductor from "../src/TestConductor.ts"

const Nap = Task.make("mem-nap", {
  payload: Schema.Struct({ days: Schema.Number }),
  success: Schema.Number
})
const NapLive = Nap.toLayer(({ days }) =>
  Effect.gen(function*() {
    yield* Durable.sleep("nap", `${days} days`)
    return yield* Clock.currentTimeMillis
  }))

describe("TestConductor", () => {
  it.effect("smoke", () =>
    Effect.gen(function*() {
      const conductor = yield* Conductor
      const id = yield* conductor.invoke(Nap, { days: 3 })
      const t0 = Date.now()
      const at = yield* TestConductor.result(Nap, id)
      console.log("took", Date.now() - t0, at)
      assert.strictEqual(at, 3 * 86_400_000)
    }).pipe(Effect.provide(NapLive.pipe(Layer.provideMerge(TestConductor.layer())))))
})
