// Hand-written SQL queue: the baseline the targets are measured against.
import { queueSystem, type QueueAdapter } from "../lib/queue.ts"
import { withClient } from "../lib/pg.ts"
import { runSteps } from "../lib/steps.ts"
import pg from "pg"
import { workerModule } from "../lib/child.ts"
import type { BenchSystem } from "./types.ts"
import { installedVersion } from "../lib/versions.ts"

const CONNECTIONS = 8
const BATCH = 100

const SCHEMA = `
  create table bench_jobs (
    id bigint generated always as identity primary key,
    run_at timestamptz not null default now(),
    failed boolean not null default false,
    payload jsonb not null
  );
  create index bench_jobs_claim on bench_jobs (run_at, id) where not failed;
  create table bench_workflows (id bigint primary key, status text not null);
  create table bench_steps (workflow_id bigint not null, step int not null, output jsonb, primary key (workflow_id, step));`

/** Also drained in the measuring process by `bench:inprocess`. */
export const adapter: QueueAdapter = {
  name: "sql-baseline",
  settings: () => ({
    queue: "one table (identity id, run_at, failed, jsonb payload) + partial index (run_at, id) where not failed",
    claim: `DELETE ... WHERE id IN (SELECT id ... WHERE run_at <= now() ORDER BY run_at, id LIMIT ${BATCH} FOR UPDATE SKIP LOCKED) RETURNING payload (claim and delete in one autocommitted statement)`,
    connections: CONNECTIONS,
    wake: "LISTEN/NOTIFY (one wakes one idle connection) + 500 ms poll",
    insert: "INSERT ... SELECT FROM unnest($1::jsonb[]) per chunk; single invocation: INSERT + pg_notify in one statement",
    w3: "12 autocommitted statements per workflow (INSERT workflow, 10 x INSERT step result, UPDATE done), 24 connections",
    driver: `pg ${installedVersion("pg")}`
  }),
  worker: () => ({ module: workerModule("sql-baseline"), options: { connections: CONNECTIONS, batch: BATCH } }),
  setup: (dbUrl) => withClient(dbUrl, (c) => c.query(SCHEMA)).then(() => {}),
  inserter: async (dbUrl) => {
    const c = new pg.Client({ connectionString: dbUrl })
    await c.connect()
    return {
      insert: async (payloads, runAt) => {
        await c.query("insert into bench_jobs (payload, run_at) select p, $2 from unnest($1::jsonb[]) as p", [
          payloads.map((x) => JSON.stringify(x)),
          runAt ?? new Date()
        ])
      },
      close: () => c.end()
    }
  },
  producer: async (dbUrl) => {
    const c = new pg.Client({ connectionString: dbUrl })
    await c.connect()
    return {
      enqueue: async (payload) => {
        await c.query({
          name: "enqueue",
          text: "with j as (insert into bench_jobs (payload) values ($1) returning id) select pg_notify('bench_jobs', '') from j",
          values: [JSON.stringify(payload)]
        })
      },
      close: () => c.end()
    }
  },
  remaining: async (c) =>
    Number((await c.query("select count(*)::int as n from bench_jobs where run_at <= now()")).rows[0].n)
}

const base = queueSystem(adapter)

export const sqlBaseline: BenchSystem = {
  ...base,
  w3: (ctx, p) =>
    runSteps(ctx, p, { module: workerModule("sql-steps") }, (dbUrl) =>
      withClient(dbUrl, (c) => c.query(SCHEMA)).then(() => {})
    )
}
export default sqlBaseline
