import { assert, describe, expect, it, layer } from "@effect/vitest"
import { PgClient } from "@effect/sql-pg"
import { Effect, Exit, Layer, Queue, Redacted, Scope } from "effect"
import { SqlClient } from "effect/sql"
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import {
  choosePostgresSource,
  createDatabase,
  dropDatabase,
  startPostgres,
  type PostgresServer,
} from "../dev/postgres"
import * as TestDatabase from "./support/TestDatabase"

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..")

/** Runs `f` against `url` with a short-lived client. */
const withClient = <A, E>(url: string, f: (sql: SqlClient.SqlClient) => Effect.Effect<A, E>) =>
  Effect.gen(function* () {
    return yield* f(yield* SqlClient.SqlClient)
  }).pipe(Effect.provide(PgClient.layer({ url: Redacted.make(url), maxConnections: 1 })))

const query = <A extends object>(url: string, text: string) =>
  Effect.runPromise(withClient(url, (sql) => sql.unsafe<A>(text)))

const dataDirectory = async (url: string): Promise<string> =>
  (await query<{ data_directory: string }>(url, "SHOW data_directory"))[0]!.data_directory

const isAlive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

const waitFor = async (what: string, condition: () => boolean, ms = 10_000) => {
  const deadline = Date.now() + ms
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 25))
  }
}

describe("choosePostgresSource", () => {
  it("prefers DATABASE_URL, then CONDUCTOR_PG_IMAGE, then embedded", () => {
    const url = "postgres://u@db:5432/x"
    expect(choosePostgresSource({ DATABASE_URL: url, CONDUCTOR_PG_IMAGE: "postgres:17" })).toEqual({
      kind: "env",
      url,
    })
    expect(choosePostgresSource({ DATABASE_URL: url })).toEqual({ kind: "env", url })
    expect(choosePostgresSource({ CONDUCTOR_PG_IMAGE: "postgres:17" })).toEqual({
      kind: "container",
      image: "postgres:17",
    })
    expect(choosePostgresSource({})).toEqual({ kind: "embedded" })
    // empty values count as unset
    expect(choosePostgresSource({ DATABASE_URL: "", CONDUCTOR_PG_IMAGE: " " })).toEqual({ kind: "embedded" })
    expect(choosePostgresSource({ DATABASE_URL: " ", CONDUCTOR_PG_IMAGE: "postgres:16" })).toEqual({
      kind: "container",
      image: "postgres:16",
    })
  })

  it("an env source is used as is and stop() is a no-op", async () => {
    const server = await startPostgres({ env: { DATABASE_URL: "postgres://u@nowhere:1/x" } })
    expect(server).toMatchObject({ url: "postgres://u@nowhere:1/x", source: "env" })
    await server.stop()
    await server.stop()
  })
})

layer(TestDatabase.layer)("TestDatabase.layer", (it) => {
  it.effect("runs queries in its own fresh database", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const db = yield* TestDatabase.TestDatabase
      const [row] = yield* sql<{ db: string; one: number }>`select current_database() as db, 1::int4 as one`
      assert.strictEqual(row!.db, db.name)
      assert.strictEqual(row!.one, 1)
      assert.match(db.url, new RegExp(`/${db.name}$`))
      yield* sql`create table t (id int primary key)`
      yield* sql`insert into t values (1), (2)`
      const rows = yield* sql<{ n: number }>`select count(*)::int4 as n from t`
      assert.strictEqual(rows[0]!.n, 2)
    }))

  it.effect("LISTEN/NOTIFY works between two connections", () =>
    Effect.gen(function* () {
      const pg = yield* PgClient.PgClient
      const db = yield* TestDatabase.TestDatabase
      const queue = yield* pg.listen("harness_channel") // holds its own connection

      yield* pg.notify("harness_channel", "from the pool")
      const first = yield* Queue.take(queue)
      assert.strictEqual(first.channel, "harness_channel")
      assert.strictEqual(first.payload, "from the pool")

      // from a separate client: the notification carries that backend's pid
      const [sender] = yield* withClient(db.url, (sql) =>
        sql<{ pid: number }>`select pg_backend_pid() as pid, pg_notify('harness_channel', 'from elsewhere')`,
      )
      const second = yield* Queue.take(queue)
      assert.strictEqual(second.payload, "from elsewhere")
      assert.strictEqual(second.processId, sender!.pid)
    }))
})

describe("TestDatabase isolation", () => {
  it.effect("two layers get different databases that don't see each other's tables, dropped at scope close", () =>
    Effect.gen(function* () {
      const scope = yield* Scope.make()
      const a = yield* Layer.buildWithScope(TestDatabase.layer, scope)
      const b = yield* Layer.buildWithScope(TestDatabase.layer, scope)
      const dbA = yield* Effect.provide(Effect.service(TestDatabase.TestDatabase), a)
      const dbB = yield* Effect.provide(Effect.service(TestDatabase.TestDatabase), b)
      assert.notStrictEqual(dbA.name, dbB.name)

      const sqlA = yield* Effect.provide(Effect.service(SqlClient.SqlClient), a)
      const sqlB = yield* Effect.provide(Effect.service(SqlClient.SqlClient), b)
      yield* sqlA`create table only_in_a (x int)`
      const [seenFromA] = yield* sqlA<{ t: string | null }>`select to_regclass('only_in_a')::text as t`
      const [seenFromB] = yield* sqlB<{ t: string | null }>`select to_regclass('only_in_a')::text as t`
      assert.strictEqual(seenFromA!.t, "only_in_a")
      assert.strictEqual(seenFromB!.t, null)

      yield* Scope.close(scope, Exit.void)
      const admin = TestDatabase.serverUrl()
      const left = yield* withClient(admin, (sql) =>
        sql<{ datname: string }>`select datname from pg_database where datname in (${dbA.name}, ${dbB.name})`,
      )
      assert.deepStrictEqual(left, [])
    }))

  it("createDatabase / dropDatabase (Promise API)", async () => {
    const admin = TestDatabase.serverUrl()
    const name = `harness_${process.pid}_${Date.now()}`
    const url = await createDatabase(admin, name)
    expect((await query<{ db: string }>(url, "select current_database() as db"))[0]!.db).toBe(name)
    await expect(createDatabase(admin, name)).rejects.toThrow(/already exists/)
    await dropDatabase(admin, name)
    await dropDatabase(admin, name) // missing is fine
    await expect(createDatabase(admin, "no; drop")).rejects.toThrow(/invalid database name/)
  })
})

describe("embedded server", () => {
  it("starts a second independent server with custom settings and removes its dir on stop", async () => {
    const server = await startPostgres({ env: {}, settings: { max_connections: "57", fsync: "on" } })
    try {
      expect(server.source).toBe("embedded")
      expect(server.url).not.toBe(TestDatabase.serverUrl())
      const dir = await dataDirectory(server.url)
      expect(fs.existsSync(dir)).toBe(true)
      expect((await query<{ max_connections: string }>(server.url, "SHOW max_connections"))[0]!.max_connections).toBe(
        "57",
      )
      expect((await query<{ fsync: string }>(server.url, "SHOW fsync"))[0]!.fsync).toBe("on")
      await server.stop()
      await server.stop() // idempotent
      expect(fs.existsSync(dir)).toBe(false)
      expect(fs.existsSync(path.dirname(dir))).toBe(false)
    } finally {
      await server.stop()
    }
  })

  it("a dir left behind by a killed run does not break the next start", async () => {
    // A child process starts a server, reports where it lives, then gets SIGKILLed.
    const script = path.join(os.tmpdir(), `harness-child-${process.pid}-${Date.now()}.mts`)
    const module = JSON.stringify(path.join(repoRoot, "dev", "postgres.ts"))
    fs.writeFileSync(
      script,
      `import { startPostgres } from ${module}
const server = await startPostgres({ env: {} })
console.log(JSON.stringify({ url: server.url }))
setInterval(() => {}, 1 << 30)
`,
    )
    const child = spawn(process.execPath, ["--import", "tsx", script], {
      cwd: repoRoot,
      stdio: ["ignore", "pipe", "pipe"],
    })
    let next: PostgresServer | undefined
    try {
      const { url } = await new Promise<{ url: string }>((resolve, reject) => {
        let out = ""
        let err = ""
        child.stdout.on("data", (d) => {
          out += d
          const line = out.split("\n").find((l) => l.startsWith("{"))
          if (line) resolve(JSON.parse(line))
        })
        child.stderr.on("data", (d) => (err += d))
        child.on("exit", (code) => reject(new Error(`child exited (${code}): ${err}`)))
      })
      const dataDir = await dataDirectory(url)
      const runDir = path.dirname(dataDir)
      const postmasterPid = Number(fs.readFileSync(path.join(dataDir, "postmaster.pid"), "utf8").split("\n")[0])
      assert.isTrue(isAlive(postmasterPid))

      child.kill("SIGKILL")
      await new Promise((r) => child.once("exit", r))
      // the server dies with its parent (pdeathsig); its files stay behind
      await waitFor("the orphaned postmaster to die", () => !isAlive(postmasterPid))
      expect(fs.existsSync(path.join(dataDir, "postmaster.pid"))).toBe(true)

      next = await startPostgres({ env: {} })
      expect(fs.existsSync(runDir)).toBe(false) // swept
      expect((await query<{ one: number }>(next.url, "select 1::int4 as one"))[0]!.one).toBe(1)
    } finally {
      child.kill("SIGKILL")
      fs.rmSync(script, { force: true })
      await next?.stop()
    }
  })
})

describe("container source", () => {
  it("fails quickly with a clear error when no container runtime is usable", async () => {
    const started = Date.now()
    await expect(startPostgres({ env: { CONDUCTOR_PG_IMAGE: "postgres:17" } })).rejects.toThrow(
      /CONDUCTOR_PG_IMAGE=postgres:17: (cannot load @testcontainers\/postgresql|could not start a Postgres container)/,
    )
    expect(Date.now() - started).toBeLessThan(20_000)
  })
})
