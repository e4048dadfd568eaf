/**
 * One behaviour suite, two backends: every scenario under test/behaviour runs
 * once on the in-memory store (TestClock, time moved by the harness) and once
 * on a real Postgres (live clock, short durations).
 *
 *   for (const backend of backends) {
 *     layer(backend.layer, { excludeTestServices: backend.excludeTestServices })(backend.name, (it) => { ... })
 *   }
 */
import { Duration, Effect, Layer, Option } from "effect"
import type { InvalidConfig } from "../../src/Errors.ts"
import type { Registry } from "../../src/internal/Registry.ts"
import type { Store } from "../../src/internal/Store.ts"
import * as TestConductor from "../../src/TestConductor.ts"
import type * as Worker from "../../src/Worker.ts"
import { pgStack, withWorker as withWorkerOn } from "./stack.ts"

export interface Backend {
  readonly name: "memory" | "postgres"
  /** Conductor | Registry | Store (+ TestConductor on memory, TestDatabase on postgres) */
  readonly layer: Layer.Layer<any, any, never>
  /** options for @effect/vitest `layer(...)`: memory keeps TestClock, postgres uses the live clock */
  readonly excludeTestServices: boolean
  /** Moves time by d: the TestClock on memory (deadline by deadline); a real sleep on postgres (keep durations short). */
  readonly advance: (d: Duration.Input) => Effect.Effect<void>
  /** Runs `effect` to completion; on memory moves the TestClock as needed; on postgres just runs it. */
  readonly settle: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
}

const memory: Backend = {
  name: "memory",
  // Workers are started by the scenarios (withWorker), with their own options.
  layer: TestConductor.layer({ worker: false }),
  excludeTestServices: false,
  advance: (d) =>
    Effect.flatMap(Effect.serviceOption(TestConductor.TestConductor), (t) =>
      Option.isSome(t) ? t.value.advance(d) : Effect.die(new Error("memory backend: TestConductor missing"))),
  settle: (effect) =>
    Effect.flatMap(Effect.serviceOption(TestConductor.TestConductor), (t) =>
      Option.isSome(t) ? t.value.runUntil(effect) : effect)
}

const postgres: Backend = {
  name: "postgres",
  layer: pgStack(),
  excludeTestServices: true,
  advance: (d) => Effect.sleep(d),
  settle: (effect) => effect
}

export const backends: ReadonlyArray<Backend> = [memory, postgres]

/**
 * Runs `body` with a worker (the given handler layers registered first)
 * alive; the worker shuts down when `body` ends. As test/support/stack.ts's,
 * with `shutdownGrace` 0 by default: handlers a scenario leaves running are
 * interrupted at its end instead of holding teardown (on memory the grace
 * period would be TestClock time that nobody moves).
 */
export const withWorker = <A, E, R, RH = Registry>(
  handlers: Layer.Layer<never, never, RH>,
  options: Worker.WorkerOptions,
  body: Effect.Effect<A, E, R>
): Effect.Effect<A, E | InvalidConfig, R | RH | Store | Registry> =>
  withWorkerOn(handlers, { shutdownGrace: Duration.zero, ...options }, body)

let counter = 0
/** A name unique in this test file (tasks and queues of one scenario never meet another's). */
export const unique = (prefix: string) => `${prefix}-${++counter}`

/**
 * Tolerance for comparing a handler's clock (Effect's `Clock`) with the
 * store's (Postgres `now()`, as the worker estimates it): the worker's offset
 * estimate can be off by a few milliseconds. On memory both are the TestClock.
 */
export const clockSkewMillis = (backend: Backend) => (backend.name === "memory" ? 0 : 20)
