import { Effect, PubSub } from "effect"
import { type Signal, Store } from "../../src/internal/Store.ts"

/**
 * Returns once the store's listener delivers notifications (its LISTEN may
 * still be starting): inserts into a probe queue until its Work signal, not
 * only the listener's Reconnected, comes through.
 */
export const listening = (signals: PubSub.Subscription<Signal>) =>
  Effect.gen(function*() {
    const store = yield* Store
    while (true) {
      yield* store.insert([{ id: crypto.randomUUID(), task: "probe", queue: "probe", payload: {}, priority: 0, maxAttempts: 1 }])
      while (true) {
        const signal = yield* PubSub.take(signals)
        if (signal._tag === "Work" && signal.queue === "probe") return
        if (signal._tag === "Reconnected") break
      }
    }
  })

/** The next Work signal for `queue`. */
export const workFor = (signals: PubSub.Subscription<Signal>, queue: string) =>
  Effect.gen(function*() {
    while (true) {
      const signal = yield* PubSub.take(signals)
      if (signal._tag === "Work" && signal.queue === queue) return
    }
  })
