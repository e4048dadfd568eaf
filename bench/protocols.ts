// What a claim-and-finish protocol costs Postgres, apart from any worker: the
// most a worker using it could drain (W1). Run from the repo root with
// `npm run bench:protocols`.
//
// Each protocol drains the same backlog of no-op rows from effect-conductor's
// own `executions` table (migrations applied, rows inserted by SQL), with
// plain `pg` clients and no handler: CONNECTIONS connections, each taking
// BATCH rows at a time until none are left. Rounds interleave the protocols
// on one server with the bench's settings, and medians are printed.
//
//   delete            the SQL baseline's protocol: one autocommitted
//                     DELETE ... (SELECT ... FOR UPDATE SKIP LOCKED) RETURNING,
//                     the rows found again by primary key.
//                     At most once: a crash after it loses the batch.
//   lease             what the worker does today: `claim` (marks the rows
//                     running, counts the attempt, leases them), then `finish`
//                     (moves them to finished_executions).
//   lease-no-history  `claim`, then a plain DELETE.
//   held              the row locks of one open transaction are the lease:
//                     BEGIN, SELECT ... FOR UPDATE SKIP LOCKED, then `finish`
//                     fenced by those locks instead of a lease, COMMIT.
//                     Nothing counts an attempt of a worker that crashes
//                     inside the transaction (see bench/README).
//   held-no-history   BEGIN, SELECT ... FOR UPDATE SKIP LOCKED, DELETE, COMMIT.
//   advisory          session advisory locks taken by the claim's read (no
//                     write), re-read with a fresh snapshot, released with the
//                     next claim; then `finish` as in "held".
//
// Env: BENCH_PROTOCOLS (comma list of the names above, default all),
// BENCH_PROTOCOLS_N (rows, default 100000), BENCH_PROTOCOLS_CONNECTIONS (8),
// BENCH_PROTOCOLS_BATCH (100), BENCH_REPEAT (rounds, default 3), DATABASE_URL.
import pg from "pg"
import { checkpoint, readServerSettings, startServer } from "./lib/pg.ts"
import { chooseNames, makeLog, runRounds, writeResults } from "./lib/rounds.ts"
import { median, postgresCpuMs, round } from "./lib/stats.ts"
import { clientRuntime } from "./lib/conductor.ts"

const env = process.env
const N = Number(env.BENCH_PROTOCOLS_N ?? 100_000)
const CONNECTIONS = Number(env.BENCH_PROTOCOLS_CONNECTIONS ?? 8)
const BATCH = Number(env.BENCH_PROTOCOLS_BATCH ?? 100)
const ROUNDS = Number(env.BENCH_REPEAT ?? 3)
const S = "conductor"

const PICK = `SELECT e.id FROM ${S}.executions e
  WHERE e.runnable AND e.status = 'pending' AND e.queue = 'default' AND e.task = ANY ('{noop}'::text[])
  ORDER BY e.priority DESC, e.run_at, e.id LIMIT ${BATCH} FOR UPDATE SKIP LOCKED`
const FINISH_ARGS = (ids: ReadonlyArray<string>) => [ids, ids.map(() => "completed"), ids.map(() => "null"), ids.map(() => null)]

/**
 * `finish_unleased`: the library's `finish`, read back from the server, with
 * its lease fence (leased to the caller, running) replaced by "still
 * pending": the caller's own row locks fence it. It counts the attempt the
 * claim did not.
 */
const finishUnleased = async (c: pg.Client) => {
  const def: string = (await c.query(`SELECT pg_get_functiondef('${S}.finish'::regproc) AS d`)).rows[0].d
  const fence = "e.lease_owner = p_owner AND e.status = 'running'"
  const attempts = "d.attempts, d.max_attempts"
  const started = "d.created_at, d.started_at"
  if (!def.includes(fence) || !def.includes(attempts) || !def.includes(started)) {
    throw new Error("finish() no longer has the shape this probe rewrites; update bench/protocols.ts")
  }
  await c.query(
    def.replace(`${S}.finish(`, `${S}.finish_unleased(`)
      .replace(fence, "e.status = 'pending'")
      .replace(attempts, "d.attempts + 1, d.max_attempts")
      .replace(started, "d.created_at, COALESCE(d.started_at, now())")
  )
}

const ADVISORY_CLAIM = `CREATE FUNCTION ${S}.claim_advisory(n integer, p_unlock uuid[])
RETURNS TABLE (id uuid, payload jsonb) LANGUAGE plpgsql
SET enable_sort = off SET enable_bitmapscan = off SET enable_seqscan = off SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
DECLARE
  locked uuid[];
BEGIN
  PERFORM pg_advisory_unlock(uuid_hash_extended(u, 0)) FROM unnest(p_unlock) AS u;
  locked := ARRAY(
    SELECT e.id FROM ${S}.executions e
    WHERE e.runnable AND e.status = 'pending' AND e.queue = 'default' AND e.task = ANY ('{noop}'::text[])
      AND pg_try_advisory_lock(uuid_hash_extended(e.id, 0))
    ORDER BY e.priority DESC, e.run_at, e.id LIMIT n);
  -- A new snapshot: a row finished (and unlocked) after the read above is gone.
  RETURN QUERY SELECT e.id, e.payload FROM ${S}.executions e WHERE e.id = ANY (locked) AND e.status = 'pending';
END
$$`

type Drain = (c: pg.Client) => Promise<number>

const ids = (r: pg.QueryResult) => r.rows.map((row: { id: string }) => row.id)

/** `claim` leases a batch (one statement, autocommitted), then `finish` ends it. */
const leased = (finish: string, params: (owner: string, ids: ReadonlyArray<string>) => unknown[]): Drain => {
  const owner = crypto.randomUUID()
  return async (c) => {
    let n = 0
    for (;;) {
      const r = await c.query({ name: "claim", text: `SELECT * FROM ${S}.claim('default', '{noop}', $1, $2, 30000, 0, 0, 0)`, values: [BATCH, owner] })
      if (r.rows.length === 0) return n
      n += r.rows.length
      await c.query({ name: "finish", text: finish, values: params(owner, ids(r)) })
    }
  }
}

/** One open transaction per batch: its row locks fence `finish`, which it commits. */
const held = (finish: string, params: (ids: ReadonlyArray<string>) => unknown[]): Drain => async (c) => {
  let n = 0
  for (;;) {
    await c.query("BEGIN")
    const taken = ids(await c.query({ name: "pick", text: PICK }))
    if (taken.length > 0) await c.query({ name: "finish", text: finish, values: params(taken) })
    await c.query("COMMIT")
    if (taken.length === 0) return n
    n += taken.length
  }
}

const PROTOCOLS: Record<string, { setup?: (c: pg.Client) => Promise<unknown>; drain: () => Drain }> = {
  delete: {
    drain: () => async (c) => {
      let n = 0
      for (;;) {
        // = ANY (ARRAY(...)), not IN (...): for batches of a few hundred the
        // planner turns IN into a hash semi-join over a sequential scan of the
        // whole table (11–14 ms per 800 rows of 100k, against 1.5–2 ms by the
        // primary key), which measures the plan and not the protocol. The SQL
        // baseline's batches of 100 get the primary-key plan either way.
        const r = await c.query({ name: "take", text: `DELETE FROM ${S}.executions WHERE id = ANY (ARRAY(${PICK})) RETURNING id, payload` })
        if (r.rows.length === 0) return n
        n += r.rows.length
      }
    }
  },
  lease: {
    drain: () => leased(`SELECT * FROM ${S}.finish($1, $2, $3, $4, $5, 'probe')`, (owner, taken) => [owner, ...FINISH_ARGS(taken)])
  },
  "lease-no-history": {
    drain: () => leased(`DELETE FROM ${S}.executions WHERE id = ANY ($1::uuid[])`, (_, taken) => [taken])
  },
  held: {
    setup: finishUnleased,
    drain: () => held(`SELECT * FROM ${S}.finish_unleased(NULL::uuid, $1, $2, $3, $4, 'probe')`, FINISH_ARGS)
  },
  "held-no-history": {
    drain: () => held(`DELETE FROM ${S}.executions WHERE id = ANY ($1::uuid[])`, (taken) => [taken])
  },
  advisory: {
    setup: async (c) => {
      await finishUnleased(c)
      await c.query(ADVISORY_CLAIM)
    },
    drain: () => async (c) => {
      let n = 0
      let unlock: ReadonlyArray<string> = []
      for (;;) {
        const taken = ids(await c.query({ name: "claim", text: `SELECT * FROM ${S}.claim_advisory($1, $2)`, values: [BATCH, unlock] }))
        if (taken.length === 0) return n
        n += taken.length
        await c.query({ name: "finish", text: `SELECT * FROM ${S}.finish_unleased(NULL::uuid, $1, $2, $3, $4, 'probe')`, values: FINISH_ARGS(taken) })
        // Unlocked only after the finish committed: a claim that gets the lock
        // later then sees the row gone.
        unlock = taken
      }
    }
  }
}

const chosen = chooseNames(env.BENCH_PROTOCOLS, Object.keys(PROTOCOLS), "protocol")
const log = makeLog("protocols")
const server = await startServer((line) => env.BENCH_PG_LOG === "1" && log(line))
interface Run { jobsPerSec: number; pgCpuUsPerJob: number; walBytesPerJob: number }

const runOne = async (name: string, r: number): Promise<Run> => {
  const protocol = PROTOCOLS[name]!
  const dbName = `protocols_${r}_${chosen.indexOf(name)}_${Date.now()}`
  const dbUrl = await server.createDatabase(dbName)
  try {
    const { runtime } = await clientRuntime(dbUrl) // applies the migrations
    await runtime.dispose()
    const clients = await Promise.all(Array.from({ length: CONNECTIONS + 1 }, async () => {
      const c = new pg.Client({ connectionString: dbUrl })
      await c.connect()
      return c
    }))
    const [admin, ...workers] = clients as [pg.Client, ...Array<pg.Client>]
    try {
      await protocol.setup?.(admin)
      // Ids in insertion order, as the library's own (time-ordered) ids are.
      await admin.query(`INSERT INTO ${S}.executions (id, task, queue, status, payload, max_attempts)
        SELECT (lpad(to_hex(g), 12, '0') || left(md5(g::text), 20))::uuid, 'noop', 'default', 'pending',
               jsonb_build_object('i', g), 3
        FROM generate_series(1, ${N}) g`)
      await admin.query(`VACUUM ANALYZE ${S}.executions`)
      await checkpoint(server.url)
      const wal0 = Number((await admin.query("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::float8 AS w")).rows[0].w)
      const cpu0 = postgresCpuMs()
      const t0 = performance.now()
      const counts = await Promise.all(workers.map(protocol.drain()))
      const seconds = (performance.now() - t0) / 1000
      const cpuMs = postgresCpuMs() - cpu0
      const wal = Number((await admin.query("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::float8 AS w")).rows[0].w) - wal0
      const drained = counts.reduce((a, b) => a + b, 0)
      const left = Number((await admin.query(`SELECT count(*)::int AS n FROM ${S}.executions`)).rows[0].n)
      if (drained !== N || left !== 0) throw new Error(`${name}: drained ${drained} of ${N}, ${left} left`)
      return { jobsPerSec: N / seconds, pgCpuUsPerJob: (cpuMs * 1000) / N, walBytesPerJob: wal / N }
    } finally {
      await Promise.all(clients.map((c) => c.end()))
    }
  } finally {
    await server.dropDatabase(dbName)
  }
}

try {
  const settings = await readServerSettings(server.url)
  log(`server ${server.source}: ${JSON.stringify(settings)}`)
  const runs = await runRounds(chosen, ROUNDS, runOne, log)
  const med = (name: string, key: keyof Run) => median(runs[name]!.map((r) => r[key]))
  const reference = runs.delete ? med("delete", "jobsPerSec") : undefined
  const lines = [
    `### Claim-and-finish protocols: ${N.toLocaleString("en-US")} rows, ${CONNECTIONS} connections, batches of ${BATCH}, medians of ${ROUNDS}`,
    "",
    `| protocol | jobs/s | x delete | Postgres CPU µs/job | WAL bytes/job |`,
    `|---|---:|---:|---:|---:|`,
    ...chosen.map((name) =>
      `| ${name} | ${Math.round(med(name, "jobsPerSec")).toLocaleString("en-US")} | ${reference ? round(med(name, "jobsPerSec") / reference, 2).toFixed(2) : "-"} | ${Math.round(med(name, "pgCpuUsPerJob"))} | ${Math.round(med(name, "walBytesPerJob"))} |`
    )
  ]
  console.log(lines.join("\n"))
  writeResults("protocols", { n: N, connections: CONNECTIONS, batch: BATCH, rounds: ROUNDS, settings, runs }, log)
} finally {
  await server.stop()
}
