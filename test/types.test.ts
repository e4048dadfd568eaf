/**
 * Type-level tests: payload, success and error types flow from a contract to
 * invoke, handlers and results with no casts, and misuse does not compile.
 * `tsc --noEmit` checks the @ts-expect-error lines; vitest runs the rest.
 */
import { describe, expectTypeOf, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import type { Conductor } from "../src/Conductor.ts"
import * as Durable from "../src/Durable.ts"
import type { ChildTimedOut, ExecutionCancelled, ExecutionFailed, ExecutionNotFound, StoreError, TaskMismatch } from "../src/Errors.ts"
import type { Execution } from "../src/Execution.ts"
import * as Task from "../src/Task.ts"

class Rejected extends Schema.TaggedError<Rejected>()("Rejected", { reason: Schema.String }) {}

const Order = Task.make("order", {
  payload: Schema.Struct({ orderId: Schema.String }),
  success: Schema.Struct({ total: Schema.Number }),
  error: Rejected
})
const Other = Task.make("other", { payload: Schema.Struct({ n: Schema.Number }) })

// Only the types of this stub matter: its methods are called to build effects that never run.
const conductor = new Proxy({}, { get: () => () => Effect.void }) as Conductor["Service"]

describe("types", () => {
  it("invoke takes the contract's payload", () => {
    expectTypeOf(conductor.invoke(Order, { orderId: "o-1" })).toEqualTypeOf<
      Effect.Effect<string, import("../src/Errors.ts").InvalidPayload | StoreError>
    >()
    // @ts-expect-error wrong payload shape
    conductor.invoke(Order, { orderId: 1 })
    // @ts-expect-error missing field
    conductor.invoke(Order, {})
    // @ts-expect-error another task's payload
    conductor.invoke(Other, { orderId: "o-1" })
  })

  it("result is typed by the contract", () => {
    const result = conductor.result(Order, "id")
    expectTypeOf(result).toEqualTypeOf<
      Effect.Effect<
        { readonly total: number },
        Rejected | ExecutionFailed | ExecutionCancelled | ExecutionNotFound | TaskMismatch | StoreError
      >
    >()
    // @ts-expect-error a result of Order is not a number
    const wrong: Effect.Effect<number, unknown> = conductor.result(Order, "id")
    void wrong
    // Awaiting through the wrong task gives that task's type; at run time it fails with TaskMismatch.
    expectTypeOf(conductor.result(Other, "id")).toEqualTypeOf<
      Effect.Effect<void, ExecutionFailed | ExecutionCancelled | ExecutionNotFound | TaskMismatch | StoreError>
    >()
  })

  it("handlers get the payload and must return the success and error types", () => {
    Order.toLayer((payload) => {
      expectTypeOf(payload).toEqualTypeOf<{ readonly orderId: string }>()
      return Effect.succeed({ total: 1 })
    })
    Order.toLayer(() => Effect.fail(new Rejected({ reason: "no" })))
    // @ts-expect-error wrong success type
    Order.toLayer(() => Effect.succeed({ total: "1" }))
    // @ts-expect-error an error the contract does not declare
    Order.toLayer(() => Effect.fail(new Error("undeclared")))
  })

  it("durable operations are typed", () => {
    const step = Durable.step("s", Effect.succeed({ a: [1, 2] }))
    expectTypeOf(step).toEqualTypeOf<Effect.Effect<{ a: Array<number> }, never, Execution>>()
    expectTypeOf(Durable.step("send", Effect.void)).toEqualTypeOf<Effect.Effect<void, never, Execution>>()
    // @ts-expect-error without a schema a step must return JSON (a Date would come back as a string)
    Durable.step("d", Effect.succeed(new Date()))
    expectTypeOf(Durable.step("d", Effect.succeed(new Date()), { success: Schema.Date })).toEqualTypeOf<
      Effect.Effect<Date, never, Execution>
    >()
    expectTypeOf(Durable.invoke("child", Order, { orderId: "o" })).toEqualTypeOf<
      Effect.Effect<{ readonly total: number }, Rejected | ExecutionFailed | ExecutionCancelled | ChildTimedOut, Execution>
    >()
    // @ts-expect-error wrong child payload
    Durable.invoke("child", Order, { orderId: 2 })
  })
})
