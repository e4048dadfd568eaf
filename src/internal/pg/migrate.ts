import { Effect } from "effect"
import type { SqlClient } from "effect/sql"
import * as fs from "node:fs"
import { SchemaTooNew, StoreError } from "../../Errors.ts"

/** One versioned SQL file of `migrations/`. */
export interface Migration {
  readonly version: number
  readonly name: string
  readonly sql: string
}

const migrationsDir = new URL("../../../migrations/", import.meta.url)

/** Reads `migrations/NNNN_name.sql`, in version order. */
export const loadMigrations = (): ReadonlyArray<Migration> =>
  fs.readdirSync(migrationsDir)
    .flatMap((file) => {
      const match = /^(\d+)_(.+)\.sql$/.exec(file)
      return match === null ? [] : [{
        version: Number(match[1]),
        name: match[2]!,
        sql: fs.readFileSync(new URL(file, migrationsDir), "utf8")
      }]
    })
    .sort((a, b) => a.version - b.version)

/**
 * Splits a migration file into statements (the wire protocol runs one per
 * query): at semicolons that end a line, outside dollar-quoted bodies.
 */
export const splitStatements = (text: string): ReadonlyArray<string> => {
  const statements: Array<string> = []
  let current: Array<string> = []
  let inDollarQuote = false
  for (const line of text.split("\n")) {
    if (line.trimStart().startsWith("--") && current.length === 0) continue
    current.push(line)
    if ((line.match(/\$\$/g)?.length ?? 0) % 2 === 1) inDollarQuote = !inDollarQuote
    if (!inDollarQuote && /;\s*(--.*)?$/.test(line)) {
      statements.push(current.join("\n"))
      current = []
    }
  }
  const rest = current.join("\n").trim()
  if (rest.length > 0) statements.push(rest)
  return statements
}

/** The quoted schema name substituted for `{{schema}}` in migrations and queries. */
export const quoteIdent = (name: string) => `"${name.replace(/"/g, "\"\"")}"`

/**
 * Applies the migrations the schema has not seen, in one transaction under an
 * advisory lock keyed by the schema name, so many processes starting at once
 * apply each migration exactly once (creating the schema itself races
 * without the lock). A schema holding versions this code does not know fails
 * with `SchemaTooNew` and changes nothing.
 */
export const migrate = (sql: SqlClient.SqlClient, schema: string): Effect.Effect<void, StoreError | SchemaTooNew> => {
  const q = quoteIdent(schema)
  const migrations = loadMigrations()
  const known = new Set(migrations.map((m) => m.version))
  return Effect.gen(function*() {
    yield* sql.unsafe(`SELECT pg_advisory_xact_lock(hashtext($1))`, [`effect-conductor:${schema}`])
    yield* sql.unsafe(`CREATE SCHEMA IF NOT EXISTS ${q}`)
    yield* sql.unsafe(`CREATE TABLE IF NOT EXISTS ${q}.migrations (
      version integer PRIMARY KEY,
      name text NOT NULL,
      applied_at timestamptz NOT NULL DEFAULT now()
    )`)
    const applied = yield* sql.unsafe<{ version: number; name: string }>(
      `SELECT version, name FROM ${q}.migrations ORDER BY version`
    )
    const unknown = applied.filter((row) => !known.has(row.version))
    if (unknown.length > 0) {
      return yield* new SchemaTooNew({
        schema,
        unknown: unknown.map((row) => `${row.version}_${row.name}`),
        message: `Schema "${schema}" has migrations this version of effect-conductor does not know ` +
          `(${unknown.map((row) => `${row.version}_${row.name}`).join(", ")}): the database is newer than the code`
      })
    }
    const done = new Set(applied.map((row) => row.version))
    for (const migration of migrations) {
      if (done.has(migration.version)) continue
      for (const statement of splitStatements(migration.sql.replaceAll("{{schema}}", q))) {
        yield* sql.unsafe(statement)
      }
      yield* sql.unsafe(`INSERT INTO ${q}.migrations (version, name) VALUES ($1, $2)`, [
        migration.version,
        migration.name
      ])
    }
  }).pipe(
    sql.withTransaction,
    Effect.catchTag("SqlError", (cause) =>
      Effect.fail(new StoreError({ message: `Migrating schema "${schema}" failed: ${cause.message}`, cause })))
  )
}
