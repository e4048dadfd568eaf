/**
 * The in-memory backend: the same semantics as the Postgres store (leases,
 * attempts, step memoization, dedupe, priority order, cancellation, child
 * results), kept in this process's memory with all time read from Effect's
 * `Clock`. Under `TestClock` durable sleeps, retry backoffs and child
 * timeouts fire when the test moves the clock.
 *
 * Most tests want `TestConductor.layer`, which adds the client, workers and
 * helpers on top of this store.
 *
 * @since 0.1.0
 */
import { Layer } from "effect"
import * as Internal from "./internal/memory/MemoryStore.ts"
import { Store } from "./internal/Store.ts"

/**
 * Provides an empty in-memory store. It reads the `Clock` in context when the
 * layer is built (a `TestClock` inside `it.effect` or an `@effect/vitest`
 * `layer`), and lives as long as the layer. Nothing is persisted: every build
 * starts empty, and processes do not share it.
 *
 * ```ts
 * const Live = Worker.layer({ queue: "orders" }).pipe(
 *   Layer.provideMerge(ProcessOrderLive),
 *   Layer.provideMerge(Conductor.layer),
 *   Layer.provideMerge(MemoryStore.layer)
 * )
 * ```
 */
export const layer: Layer.Layer<Store> = Layer.effect(Store, Internal.make)
