// The one Postgres server of a run, fresh databases, and server-side counters.
import { existsSync } from "node:fs"
import { fileURLToPath } from "node:url"
import pg from "pg"

/** Server settings of issue 5 (applied when the server is started here; checked otherwise). */
export const SERVER_SETTINGS: Record<string, string> = {
  fsync: "on",
  synchronous_commit: "on",
  full_page_writes: "on",
  shared_buffers: "1GB",
  max_wal_size: "4GB",
  max_connections: "300"
}

export interface Server {
  readonly url: string
  readonly source: string
  stop(): Promise<void>
  createDatabase(name: string): Promise<string>
  dropDatabase(name: string): Promise<void>
}

const DEV_MODULE = fileURLToPath(new URL("../../dev/postgres.ts", import.meta.url))

interface DevPostgres {
  startPostgres(options?: {
    env?: NodeJS.ProcessEnv
    settings?: Record<string, string>
    log?: (line: string) => void
  }): Promise<{ url: string; source: string; stop(): Promise<void> }>
  createDatabase(adminUrl: string, name: string): Promise<string>
  dropDatabase(adminUrl: string, name: string): Promise<void>
}

const quoteIdent = (s: string) => `"${s.replace(/"/g, '""')}"`
export const withDatabase = (url: string, name: string) => {
  const u = new URL(url)
  u.pathname = "/" + encodeURIComponent(name)
  return u.toString()
}

export const withClient = async <A>(url: string, f: (c: pg.Client) => Promise<A>): Promise<A> => {
  const c = new pg.Client({ connectionString: url })
  await c.connect()
  try {
    return await f(c)
  } finally {
    await c.end()
  }
}

/**
 * Uses the repo's dev/postgres.ts (DATABASE_URL when set, else a container or the
 * embedded server from npm). If that module is not there, DATABASE_URL is required.
 */
export const startServer = async (log: (line: string) => void): Promise<Server> => {
  if (existsSync(DEV_MODULE)) {
    const dev = (await import(DEV_MODULE)) as DevPostgres
    const s = await dev.startPostgres({ settings: SERVER_SETTINGS, log })
    return {
      url: s.url,
      source: s.source,
      stop: () => s.stop(),
      createDatabase: (name) => dev.createDatabase(s.url, name),
      dropDatabase: (name) => dev.dropDatabase(s.url, name)
    }
  }
  const url = process.env.DATABASE_URL
  if (!url) throw new Error(`${DEV_MODULE} not found and DATABASE_URL not set: no Postgres to run on`)
  return {
    url,
    source: "env",
    stop: async () => {},
    createDatabase: async (name) => {
      await withClient(url, (c) => c.query(`create database ${quoteIdent(name)}`))
      return withDatabase(url, name)
    },
    dropDatabase: async (name) => {
      await withClient(url, (c) => c.query(`drop database if exists ${quoteIdent(name)} with (force)`))
    }
  }
}

/** The settings actually in force, plus the server version. */
export const readServerSettings = (adminUrl: string) =>
  withClient(adminUrl, async (c) => {
    const names = [...Object.keys(SERVER_SETTINGS), "wal_level", "checkpoint_timeout", "max_worker_processes"]
    const r = await c.query(
      `select name, setting, unit, current_setting(name) as value from pg_settings where name = any($1)`,
      [names]
    )
    const out: Record<string, string> = { server_version: (await c.query("show server_version")).rows[0].server_version }
    for (const row of r.rows) out[row.name] = row.value
    return out
  })

export const checkpoint = (adminUrl: string) => withClient(adminUrl, (c) => c.query("checkpoint"))

/** Transactions of one database and the cluster's WAL position (read through the admin DB). */
export const dbCounters = (adminUrl: string, dbName: string) =>
  withClient(adminUrl, async (c) => {
    await c.query("select pg_stat_clear_snapshot()")
    const r = await c.query(
      `select (xact_commit + xact_rollback)::float8 as xacts,
              pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::float8 as wal
         from pg_stat_database where datname = $1`,
      [dbName]
    )
    return { xacts: Number(r.rows[0].xacts), wal: Number(r.rows[0].wal) }
  })

export const walPosition = (adminUrl: string) =>
  withClient(adminUrl, async (c) =>
    Number((await c.query(`select pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::float8 as wal`)).rows[0].wal)
  )
