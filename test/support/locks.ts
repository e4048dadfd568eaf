import { Deferred, Effect, Fiber } from "effect"
import { SqlClient } from "effect/sql"

/**
 * Holds an execution's row locked (`FOR UPDATE`) in a transaction on another
 * connection, as a result waiter's mark or a dedupe hit does for a moment.
 * Returns once the lock is taken; completing `release` ends the transaction,
 * and `released` waits for that.
 */
export const holdRow = (id: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const locked = yield* Deferred.make<void>()
    const release = yield* Deferred.make<void>()
    const holder = yield* Effect.forkChild(sql.withTransaction(Effect.gen(function*() {
      yield* sql`SELECT id FROM conductor.executions WHERE id = ${id} FOR UPDATE`
      yield* Deferred.succeed(locked, undefined)
      yield* Deferred.await(release)
    })))
    yield* Deferred.await(locked)
    return { release, released: Fiber.join(holder) }
  })
