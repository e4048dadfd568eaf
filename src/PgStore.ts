/**
 * The Postgres backend: effect-conductor's tables in a schema of your
 * database, reached through the `PgClient` (`@effect/sql-pg`) in context.
 *
 * @since 0.1.0
 */
import type { PgClient } from "@effect/sql-pg"
import type { Layer } from "effect"
import type { InvalidConfig, SchemaTooNew, StoreError } from "./Errors.ts"
import * as Internal from "./internal/pg/PgStore.ts"
import type { Store } from "./internal/Store.ts"

/** Options of the Postgres backend. */
export type PgStoreOptions = Internal.PgStoreOptions

/**
 * Provides the store over the `PgClient` in context. Applies pending
 * migrations first (idempotent; safe with many processes starting at once)
 * unless `migrate: false`; fails with `SchemaTooNew` against a database that
 * has migrations this code does not know.
 */
export const layer: (
  options?: PgStoreOptions
) => Layer.Layer<Store, StoreError | SchemaTooNew | InvalidConfig, PgClient.PgClient> = Internal.layer
