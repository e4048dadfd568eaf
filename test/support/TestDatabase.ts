import { PgClient } from "@effect/sql-pg"
import { Context, Effect, Layer, Redacted } from "effect"
import type { SqlClient } from "effect/sql"
import type { SqlError } from "effect/sql/SqlError"
import { randomBytes } from "node:crypto"
import { inject } from "vitest"
import { createDatabaseEffect, dropDatabaseEffect } from "../../dev/postgres"
import type {} from "./globalSetup"

/**
 * A fresh database on the run's Postgres server. `url` lets a test hand the same database to a child process.
 */
export class TestDatabase extends Context.Service<TestDatabase, { readonly url: string; readonly name: string }>()(
  "test/TestDatabase",
) {}

/** The admin URL of this run's server (from test/support/globalSetup.ts). */
export const serverUrl = (): string => inject("postgresUrl")

/** Creates a database with a random name and drops it (WITH FORCE) when the layer's scope closes. */
export const database: Layer.Layer<TestDatabase, SqlError> = Layer.effect(
  TestDatabase,
  Effect.gen(function* () {
    const adminUrl = serverUrl()
    const name = `test_${Date.now().toString(36)}_${randomBytes(5).toString("hex")}`
    const url = yield* Effect.acquireRelease(createDatabaseEffect(adminUrl, name), () =>
      dropDatabaseEffect(adminUrl, name).pipe(Effect.ignore),
    )
    return TestDatabase.of({ url, name })
  }),
)

/**
 * A fresh database plus a `PgClient` / `SqlClient` connected to it. The client pool is closed before the
 * database is dropped.
 *
 *   layer(TestDatabase.layer)("my suite", (it) => { it.effect("...", () => Effect.gen(function* () { ... })) })
 */
export const layer: Layer.Layer<TestDatabase | PgClient.PgClient | SqlClient.SqlClient, SqlError> = Layer.unwrap(
  Effect.map(Effect.service(TestDatabase), (db) => PgClient.layer({ url: Redacted.make(db.url) })),
).pipe(Layer.provideMerge(database))
