import { Effect } from "effect"
import type { Scope } from "effect"

/**
 * Folds bursts of the same signal: the first request for a key is sent at
 * once; requests arriving while it is in flight fold into one follow-up send.
 * A burst of N requests costs at most two sends, and nobody waits for them
 * (sends run in `scope`, so none outlives it).
 */
export const makeFolder = <K>(
  scope: Scope.Scope,
  send: (key: K) => Effect.Effect<void>
): (key: K) => Effect.Effect<void> => {
  const state = new Map<K, "inflight" | "again">()
  const loop = (key: K): Effect.Effect<void> =>
    Effect.flatMap(send(key), () => {
      if (state.get(key) === "again") {
        state.set(key, "inflight")
        return loop(key)
      }
      state.delete(key)
      return Effect.void
    })
  return (key) =>
    Effect.suspend(() => {
      if (state.has(key)) {
        state.set(key, "again")
        return Effect.void
      }
      state.set(key, "inflight")
      return Effect.asVoid(Effect.forkIn(Effect.ensuring(loop(key), Effect.sync(() => state.delete(key))), scope))
    })
}
