/**
 * Postgres-specific behaviour: migrations, transactions, payload checks and
 * lease fencing, written against the store and the client directly.
 */
import { assert, layer } from "@effect/vitest"
import { PgClient } from "@effect/sql-pg"
import { Context, Deferred, Effect, Exit, Fiber, Layer, Option, PubSub, Redacted, Schedule, Schema } from "effect"
import { TestClock } from "effect/testing"
import { SqlClient } from "effect/sql"
import { Conductor } from "../src/Conductor.ts"
import { loadMigrations, splitStatements } from "../src/internal/pg/migrate.ts"
import { type NewExecution, type StepRecord, Store } from "../src/internal/Store.ts"
import * as PgStore from "../src/PgStore.ts"
import * as Task from "../src/Task.ts"
import { holdRow } from "./support/locks.ts"
import { listening, workFor } from "./support/signals.ts"
import { pgStack, withWorker } from "./support/stack.ts"
import { TestDatabase } from "./support/TestDatabase.ts"

const Job = Task.make("job", { payload: Schema.Struct({ n: Schema.Number }), success: Schema.Number })
const JobLive = Job.toLayer(({ n }) => Effect.succeed(n + 1))

const count = (table: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const [row] = yield* sql.unsafe<{ n: number }>(`SELECT count(*)::int AS n FROM ${table}`)
    return row!.n
  })

/** A store layer on the same database through a new client (as another process would have). */
const storeOn = (url: string, options: PgStore.PgStoreOptions) =>
  PgStore.layer(options).pipe(Layer.provide(PgClient.layer({ url: Redacted.make(url), maxConnections: 2 })))

/** A schema as migrations up to `version` left it (the upgrade tests' starting point). */
const schemaAt = (schema: string, version: number) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql.unsafe(`CREATE SCHEMA ${schema}`)
    yield* sql.unsafe(`CREATE TABLE ${schema}.migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`)
    for (const m of loadMigrations().filter((m) => m.version <= version)) {
      for (const statement of splitStatements(m.sql.replaceAll("{{schema}}", schema))) yield* sql.unsafe(statement)
      yield* sql.unsafe(`INSERT INTO ${schema}.migrations (version, name) VALUES ($1, $2)`, [m.version, m.name])
    }
  })

layer(pgStack(), { excludeTestServices: true })("migrations", (it) => {
  it.effect("applying twice changes nothing", () =>
    Effect.gen(function*() {
      const { url } = yield* TestDatabase
      const sql = yield* SqlClient.SqlClient
      const before = yield* sql<{ version: number; applied_at: Date }>`SELECT version, applied_at FROM conductor.migrations ORDER BY version`
      yield* Layer.build(storeOn(url, {})).pipe(Effect.scoped)
      const after = yield* sql<{ version: number; applied_at: Date }>`SELECT version, applied_at FROM conductor.migrations ORDER BY version`
      assert.isAbove(before.length, 0)
      assert.deepStrictEqual(after, before)
    }))

  it.effect("many processes starting at once on an empty schema apply each migration once", () =>
    Effect.gen(function*() {
      const { url } = yield* TestDatabase
      yield* Effect.all(
        Array.from({ length: 8 }, () => Layer.build(storeOn(url, { schema: "racing" })).pipe(Effect.scoped)),
        { concurrency: "unbounded" }
      )
      const sql = yield* SqlClient.SqlClient
      const rows = yield* sql<{ version: number }>`SELECT version FROM racing.migrations ORDER BY version`
      assert.deepStrictEqual(rows.map((r) => r.version), loadMigrations().map((m) => m.version))
    }))

  it.effect("a database newer than the code is reported clearly", () =>
    Effect.gen(function*() {
      const { url } = yield* TestDatabase
      yield* Layer.build(storeOn(url, { schema: "future" })).pipe(Effect.scoped)
      const sql = yield* SqlClient.SqlClient
      yield* sql`INSERT INTO future.migrations (version, name) VALUES (9999, 'from_the_future')`
      const error = yield* Effect.flip(Layer.build(storeOn(url, { schema: "future" })).pipe(Effect.scoped))
      assert.strictEqual(error._tag, "SchemaTooNew")
      assert.match(error.message, /9999_from_the_future/)
    }))

  it.effect("moving to worker leases (0010) keeps what is leased leased until its last lease would have ended", () =>
    Effect.gen(function*() {
      const { url } = yield* TestDatabase
      const sql = yield* SqlClient.SqlClient
      // A schema as version 9 left it, with two executions leased to one worker.
      yield* schemaAt("upgrade", 9)
      const owner = crypto.randomUUID()
      yield* sql.unsafe(`INSERT INTO upgrade.executions (id, task, queue, status, payload, attempts, max_attempts, lease_owner, lease_expires_at)
        VALUES (gen_random_uuid(), 't', 'q', 'running', '{}', 1, 3, $1, now() + interval '1 minute'),
               (gen_random_uuid(), 't', 'q', 'running', '{}', 1, 3, $1, now() + interval '1 hour')`, [owner])
      yield* Effect.gen(function*() {
        const store = yield* Store
        const [worker] = yield* sql<{ id: string; left: number }>`
          SELECT id, extract(epoch FROM expires_at - now())::float8 AS left FROM upgrade.workers`
        assert.strictEqual(worker!.id, owner)
        assert.closeTo(worker!.left, 3600, 60)
        assert.strictEqual(yield* store.recoverExpiredLeases, 0)
        // Once that lease ends, both go back together.
        yield* sql`UPDATE upgrade.workers SET expires_at = now() - interval '1 second'`
        assert.strictEqual(yield* store.recoverExpiredLeases, 2)
        const [pending] = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM upgrade.executions WHERE status = 'pending'`
        assert.strictEqual(pending!.n, 2)
      }).pipe(Effect.provide(storeOn(url, { schema: "upgrade" })))
    }))

  it.effect("moving to heap-only claims (0013) keeps every row where it was: pending ones claimable, due ones promoted", () =>
    Effect.gen(function*() {
      const { url } = yield* TestDatabase
      const sql = yield* SqlClient.SqlClient
      // A schema as version 12 left it, with a row in each state.
      yield* schemaAt("hot_upgrade", 12)
      const owner = crypto.randomUUID()
      yield* sql.unsafe(`INSERT INTO hot_upgrade.workers (id, expires_at) VALUES ($1, now() + interval '1 hour')`, [owner])
      yield* sql.unsafe(`INSERT INTO hot_upgrade.executions (id, task, queue, status, payload, run_at, max_attempts, lease_owner)
        VALUES ('00000000-0000-4000-8000-000000000001', 't', 'q', 'pending', '{}', now(), 3, NULL),
               ('00000000-0000-4000-8000-000000000002', 't', 'q', 'running', '{}', now(), 3, $1),
               ('00000000-0000-4000-8000-000000000003', 't', 'q', 'scheduled', '{}', now() - interval '1 second', 3, NULL),
               ('00000000-0000-4000-8000-000000000004', 't', 'q', 'waiting', '{}', now() + interval '1 hour', 3, NULL)`, [owner])
      yield* Effect.gen(function*() {
        const store = yield* Store
        const runnable = yield* sql<{ id: string; runnable: boolean }>`SELECT id, runnable FROM hot_upgrade.executions ORDER BY id`
        assert.deepStrictEqual(runnable.map((r) => r.runnable), [true, true, false, false])
        const claim = store.claim({ queue: "q", tasks: ["t"], limit: 10, workerId: crypto.randomUUID(), leaseMillis: 30_000 })
        assert.deepStrictEqual((yield* claim).map((c) => c.id), ["00000000-0000-4000-8000-000000000001"])
        yield* store.promoteDue
        assert.deepStrictEqual((yield* claim).map((c) => c.id), ["00000000-0000-4000-8000-000000000003"])
        const [waiting] = yield* sql<{ status: string }>`
          SELECT status FROM hot_upgrade.executions WHERE id = '00000000-0000-4000-8000-000000000004'`
        assert.strictEqual(waiting!.status, "waiting")
      }).pipe(Effect.provide(storeOn(url, { schema: "hot_upgrade" })))
    }))

  it.effect("a schema name that is not a plain identifier is bad configuration", () =>
    Effect.gen(function*() {
      const { url } = yield* TestDatabase
      const error = yield* Effect.flip(Layer.build(storeOn(url, { schema: "bad; drop table x" })).pipe(Effect.scoped))
      assert.strictEqual(error._tag, "InvalidConfig")
    }))
})

layer(pgStack(), { excludeTestServices: true })("invoke", (it) => {
  it.effect("a client that only invokes holds no LISTEN connection; its first await opens one", () =>
    Effect.gen(function*() {
      const { url } = yield* TestDatabase
      const sql = yield* SqlClient.SqlClient
      const listeners = Effect.map(
        sql<{ n: number }>`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND query ILIKE 'LISTEN%'`,
        (rows) => rows[0]!.n
      )
      const before = yield* listeners
      // Fresh: this file's stack already built Conductor.layer, and a layer is built once per test layer.
      const client = Layer.fresh(Conductor.layer).pipe(
        // A schema of its own, so its executions are not this file's.
        Layer.provideMerge(PgStore.layer({ schema: "invoke_only" })),
        Layer.provide(PgClient.layer({ url: Redacted.make(url), maxConnections: 2 }))
      )
      yield* Effect.gen(function*() {
        const conductor = yield* Conductor
        const ids = yield* Effect.forEach([1, 2, 3], (n) => conductor.invoke(Job, { n }))
        // A listener started with the client would be up within milliseconds; none comes in a second.
        const more = yield* listeners.pipe(
          Effect.repeat({ until: (n) => n > before, schedule: Schedule.spaced("50 millis") }),
          Effect.timeoutOption("1 second")
        )
        assert.isTrue(Option.isNone(more))
        // Awaiting a result (no worker runs it) subscribes, and the store starts listening.
        yield* Effect.timeoutOption(conductor.result(Job, ids[0]!), "10 millis")
        const after = yield* listeners.pipe(
          Effect.repeat({ until: (n) => n > before, schedule: Schedule.spaced("20 millis") }),
          Effect.timeout("10 seconds")
        )
        assert.strictEqual(after, before + 1)
      }).pipe(Effect.provide(client))
    }))

  it.effect("joins the caller's transaction: enqueued if and only if it commits", () =>
    Effect.gen(function*() {
      const conductor = yield* Conductor
      const sql = yield* SqlClient.SqlClient
      yield* sql`CREATE TABLE orders (id int)`
      const rolledBack = yield* Effect.exit(sql.withTransaction(Effect.gen(function*() {
        yield* sql`INSERT INTO orders VALUES (1)`
        yield* conductor.invoke(Job, { n: 1 })
        return yield* Effect.fail("abort")
      })))
      assert.isTrue(Exit.isFailure(rolledBack))
      assert.strictEqual(yield* count("conductor.executions"), 0)
      const id = yield* sql.withTransaction(Effect.gen(function*() {
        yield* sql`INSERT INTO orders VALUES (2)`
        return yield* conductor.invoke(Job, { n: 2 })
      }))
      assert.strictEqual(yield* count("conductor.executions"), 1)
      assert.strictEqual(yield* withWorker(JobLive, {}, conductor.result(Job, id)), 3)
    }))

  it.effect("rejects a payload that does not fit its schema and writes nothing", () =>
    Effect.gen(function*() {
      const conductor = yield* Conductor
      const before = yield* count("conductor.executions")
      const error = yield* Effect.flip(conductor.invoke(Job, { n: "one" } as never))
      assert.strictEqual(error._tag, "InvalidPayload")
      assert.match(error.message, /Invalid payload for task "job"/)
      const many = yield* Effect.flip(conductor.invokeMany(Job, [{ payload: { n: 1 } }, { payload: { n: null } as never }]))
      assert.strictEqual(many._tag, "InvalidPayload")
      assert.strictEqual(yield* count("conductor.executions"), before)
    }))

  it.effect("invokeMany writes many in one call and returns ids in order", () =>
    Effect.gen(function*() {
      const conductor = yield* Conductor
      const ids = yield* conductor.invokeMany(Job, [1, 2, 3, 4].map((n) => ({ payload: { n } })))
      const results = yield* withWorker(JobLive, { concurrency: 2 }, Effect.forEach(ids, (id) => conductor.result(Job, id)))
      assert.deepStrictEqual(results, [2, 3, 4, 5])
    }))

  it.effect("text of any shape survives the array parameters (quotes, backslashes, braces, commas, NULL, unicode)", () =>
    Effect.gen(function*() {
      const store = yield* Store
      const worker = "00000000-0000-4000-8000-0000000000e1"
      const tricky = ['a"b', "back\\slash", "{x,y}", "NULL", "null", "", "ünïcødé ✓", " spaced ", '\\"', "a,b}{"]
      const rows = tricky.map((text) => ({ id: crypto.randomUUID(), task: "job", queue: "tricky", payload: { text }, priority: 0, maxAttempts: 3, dedupeKey: `k${text}` }))
      yield* store.insert(rows)
      for (const row of rows) assert.deepStrictEqual((yield* store.get(row.id))!.payload, row.payload)
      const claimed = yield* store.claim({ queue: "tricky", tasks: ["job"], limit: 100, workerId: worker, leaseMillis: 30_000 })
      assert.strictEqual(claimed.length, tricky.length)
      const steps = yield* store.recordSteps(worker, tricky.map((text, i) => ({ executionId: rows[i]!.id, record: { name: text, kind: "step" as const, value: text, error: undefined, attempt: 1 } })))
      assert.deepStrictEqual(steps.map((step) => [(step as StepRecord).name, (step as StepRecord).value]), tricky.map((text) => [text, text]))
      yield* store.finish(worker, rows.map((row, i) => ({ _tag: "Completed" as const, id: row.id, result: tricky[i] })))
      const { outcomes } = yield* store.awaitOutcomes(rows.map((row) => row.id))
      assert.deepStrictEqual(new Map(outcomes.map((o) => [o.id, o.result])), new Map(rows.map((row, i) => [row.id, tricky[i]])))
    }))

  it.effect("a stored payload that no longer decodes fails that execution once, for good", () =>
    Effect.gen(function*() {
      const conductor = yield* Conductor
      const OldJob = Task.make("versioned", { payload: Schema.Struct({ n: Schema.Number }) })
      const NewJob = Task.make("versioned", { payload: Schema.Struct({ n: Schema.String }), maxAttempts: 5 })
      let ran = 0
      const id = yield* conductor.invoke(OldJob, { n: 1 })
      const error = yield* withWorker(
        NewJob.toLayer(() => Effect.sync(() => void ran++)),
        {},
        Effect.flip(conductor.result(NewJob, id))
      )
      assert.strictEqual(error._tag, "ExecutionFailed")
      assert.match(error.message, /no longer decodes/)
      assert.strictEqual(ran, 0)
      assert.strictEqual((yield* conductor.get(id)).attempts, 1)
    }))

  it.effect("result of an unknown id, or through the wrong task, is a clear error", () =>
    Effect.gen(function*() {
      const conductor = yield* Conductor
      const missing = yield* Effect.flip(conductor.result(Job, "00000000-0000-4000-8000-000000000000"))
      assert.strictEqual(missing._tag, "ExecutionNotFound")
      const Other = Task.make("other", { payload: Schema.Struct({ n: Schema.Number }), success: Schema.Number })
      const id = yield* conductor.invoke(Job, { n: 1 })
      yield* withWorker(JobLive, {}, conductor.result(Job, id))
      const mismatch = yield* Effect.flip(conductor.result(Other, id))
      assert.strictEqual(mismatch._tag, "TaskMismatch")
    }))

  it.effect("one execution alone (its own statement) is stored as it would be in a batch", () =>
    Effect.gen(function*() {
      const store = yield* Store
      const sql = yield* SqlClient.SqlClient
      const now = Date.now()
      const cases: ReadonlyArray<Partial<NewExecution>> = [
        {},
        { priority: 7, payload: { n: 2, s: "quote \" and backslash \\" } },
        { payload: null },
        { delayMillis: 60_000 },
        { runAt: now + 3_600_000 },
        { runAt: now - 1_000 },
        { parentId: crypto.randomUUID(), parentStep: "child step", maxAttempts: 1 }
      ]
      const stored = (id: string) =>
        Effect.map(
          sql<{ status: string; priority: number; payload: unknown; max_attempts: number; attempts: number; parent_id: string | null; parent_step: string | null; run_at_ms: number }>`
            SELECT status, priority, payload, max_attempts, attempts, parent_id, parent_step,
                   (extract(epoch FROM run_at) * 1000)::float8 AS run_at_ms
            FROM conductor.executions WHERE id = ${id}`,
          (rows) => rows[0]!
        )
      for (const options of cases) {
        const row = (): NewExecution => ({ id: crypto.randomUUID(), task: "job", queue: "single", payload: { n: 1 }, priority: 0, maxAttempts: 3, ...options })
        const alone = row()
        const batch = row()
        const filler = row()
        assert.deepStrictEqual(yield* store.insert([alone]), [{ id: alone.id, created: true }])
        assert.deepStrictEqual(yield* store.insert([batch, filler]), [{ id: batch.id, created: true }, { id: filler.id, created: true }])
        const { run_at_ms: a, ...one } = yield* stored(alone.id)
        const { run_at_ms: b, ...many } = yield* stored(batch.id)
        assert.deepStrictEqual(one, many, JSON.stringify(options))
        assert.strictEqual(one.status, options.delayMillis !== undefined || (options.runAt ?? 0) > now ? "scheduled" : "pending")
        if (options.runAt !== undefined) {
          assert.strictEqual(a, options.runAt)
          assert.strictEqual(b, options.runAt)
        } else assert.isBelow(Math.abs(a - b), 5_000, JSON.stringify(options))
      }
    }))
})

layer(pgStack(), { excludeTestServices: true })("leases", (it) => {
  it.effect("a stale worker's late writes change nothing", () =>
    Effect.gen(function*() {
      const store = yield* Store
      const sql = yield* SqlClient.SqlClient
      const [row] = yield* store.insert([{ id: crypto.randomUUID(), task: "job", queue: "q", payload: { n: 1 }, priority: 0, maxAttempts: 3 }])
      const claimOptions = { queue: "q", tasks: ["job"], limit: 10, leaseMillis: 30_000 }
      const [a] = yield* store.claim({ ...claimOptions, workerId: "00000000-0000-4000-8000-00000000000a" })
      assert.strictEqual(a!.id, row!.id)
      // Worker A stops heartbeating; its lease expires and B takes over.
      yield* sql`UPDATE conductor.workers SET expires_at = now() - interval '1 second' WHERE id = '00000000-0000-4000-8000-00000000000a'`
      assert.strictEqual(yield* store.recoverExpiredLeases, 1)
      const [b] = yield* store.claim({ ...claimOptions, workerId: "00000000-0000-4000-8000-00000000000b" })
      assert.strictEqual(b!.attempt, 2)
      // A's late completion, step and heartbeat are fenced out.
      yield* store.finish("00000000-0000-4000-8000-00000000000a", [{ _tag: "Completed", id: a!.id, result: 99 }])
      const stale = yield* store.recordSteps("00000000-0000-4000-8000-00000000000a", [
        { executionId: a!.id, record: { name: "s", kind: "step", value: 1, error: undefined, attempt: 1 } }
      ])
      assert.deepStrictEqual(stale, [undefined])
      const beat = yield* store.heartbeat("00000000-0000-4000-8000-00000000000a", [a!.id], 30_000)
      assert.deepStrictEqual(beat.lost, [a!.id])
      // Nor does that heartbeat make A's lease again (as one still in flight
      // when its worker retires would have): only a claim does.
      const [leases] = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM conductor.workers WHERE id = '00000000-0000-4000-8000-00000000000a'`
      assert.strictEqual(leases!.n, 0)
      assert.strictEqual((yield* store.get(a!.id))!.status, "running")
      assert.deepStrictEqual(yield* store.steps(a!.id), [])
      // B's completion lands.
      yield* store.finish("00000000-0000-4000-8000-00000000000b", [{ _tag: "Completed", id: b!.id, result: 2 }])
      const done = (yield* store.get(b!.id))!
      assert.strictEqual(done.status, "completed")
      assert.strictEqual(done.result, 2)
    }))

  it.effect("step records: the first writer wins and a late writer adopts the stored value", () =>
    Effect.gen(function*() {
      const store = yield* Store
      const worker = "00000000-0000-4000-8000-00000000000c"
      const [row] = yield* store.insert([{ id: crypto.randomUUID(), task: "job", queue: "q2", payload: {}, priority: 0, maxAttempts: 3 }])
      yield* store.claim({ queue: "q2", tasks: ["job"], limit: 1, workerId: worker, leaseMillis: 30_000 })
      const record = (value: number) => ({ executionId: row!.id, record: { name: "pick", kind: "step" as const, value, error: undefined, attempt: 1 } })
      const [first] = (yield* store.recordSteps(worker, [record(1)])) as ReadonlyArray<StepRecord>
      const [late] = (yield* store.recordSteps(worker, [record(2)])) as ReadonlyArray<StepRecord>
      assert.strictEqual(first!.value, 1)
      assert.strictEqual(late!.value, 1)
      assert.deepStrictEqual((yield* store.steps(row!.id)).map((s) => s.value), [1])
      // A mixed batch answers each input in order: new, lost to the earlier writer, not leased.
      const other = { executionId: crypto.randomUUID(), record: { name: "x", kind: "step" as const, value: 0, error: undefined, attempt: 1 } }
      const fresh = { executionId: row!.id, record: { name: "fresh", kind: "step" as const, value: { a: [1, "b"] }, error: undefined, attempt: 1 } }
      const [a, b, c] = (yield* store.recordSteps(worker, [fresh, record(3), other])) as ReadonlyArray<StepRecord | undefined>
      assert.deepStrictEqual({ ...a!, recordedAt: 0 }, { name: "fresh", kind: "step", value: { a: [1, "b"] }, error: undefined, attempt: 1, recordedAt: 0 })
      assert.isAtLeast(a!.recordedAt, first!.recordedAt)
      assert.deepStrictEqual({ ...b!, recordedAt: 0 }, { name: "pick", kind: "step", value: 1, error: undefined, attempt: 1, recordedAt: 0 })
      assert.strictEqual(b!.recordedAt, first!.recordedAt)
      assert.isUndefined(c)
    }))

  it.effect("step records: a batch with nothing to conflict is written by a plain INSERT, a conflict falls back to the careful statement", () =>
    Effect.gen(function*() {
      const store = yield* Store
      const sql = yield* SqlClient.SqlClient
      const worker = "00000000-0000-4000-8000-000000000010"
      const [row] = yield* store.insert([{ id: crypto.randomUUID(), task: "job", queue: "q3", payload: {}, priority: 0, maxAttempts: 3 }])
      yield* store.claim({ queue: "q3", tasks: ["job"], limit: 1, workerId: worker, leaseMillis: 30_000 })
      // Calls of the careful statement made by one record_steps call, counted in its own transaction.
      const carefulCalls = (name: string, value: number) =>
        sql.withTransaction(Effect.gen(function*() {
          yield* sql`SET LOCAL track_functions = 'pl'`
          const [answer] = yield* sql<{ ord: number; value: unknown }>`
            SELECT ord, value FROM conductor.record_steps(${worker}::uuid, ARRAY[${row!.id}]::uuid[], ARRAY[${name}], ARRAY['step'],
              ARRAY[${String(value)}], ARRAY[NULL]::text[], ARRAY[1])`
          const calls = yield* sql<{ calls: number }>`
            SELECT calls::int FROM pg_stat_xact_user_functions WHERE schemaname = 'conductor' AND funcname = 'record_steps_careful'`
          return { answer, careful: calls[0]?.calls ?? 0 }
        }))
      const first = yield* carefulCalls("a", 1)
      assert.strictEqual(first.careful, 0)
      assert.deepStrictEqual({ ...first.answer }, { ord: 1, value: null })
      const again = yield* carefulCalls("a", 2)
      assert.strictEqual(again.careful, 1)
      assert.deepStrictEqual({ ...again.answer }, { ord: 1, value: 1 })
      assert.deepStrictEqual((yield* store.steps(row!.id)).map((s) => s.value), [1])
    }))

  it.effect("a claim and a mark of awaited executions commit without waiting for their WAL flush; their connection flushes again afterwards", () =>
    Effect.gen(function*() {
      const { url } = yield* TestDatabase
      // Every connection of this client flushes at commit, whatever the test server's default.
      const client = PgClient.layer({ url: Redacted.make(url), maxConnections: 2, startupParameters: { synchronous_commit: "on" } })
      yield* Effect.gen(function*() {
        const store = yield* Store
        const sql = yield* SqlClient.SqlClient
        const setting = Effect.map(sql<{ s: string }>`SELECT current_setting('synchronous_commit') AS s`, (rows) => rows[0]!.s)
        const worker = "00000000-0000-4000-8000-00000000000e"
        const claim = store.claim({ queue: "relaxed", tasks: ["job"], limit: 1, workerId: worker, leaseMillis: 30_000 })
        yield* store.insert([1, 2].map(() => ({ id: crypto.randomUUID(), task: "job", queue: "relaxed", payload: {}, priority: 0, maxAttempts: 3 })))
        // Inside a transaction, to see the setting the claim leaves for its commit.
        const inside = yield* sql.withTransaction(Effect.gen(function*() {
          assert.strictEqual(yield* setting, "on")
          assert.strictEqual((yield* claim).length, 1)
          return yield* setting
        }))
        assert.strictEqual(inside, "off")
        // Autocommitted, as workers claim: the setting ends with the claim's own transaction.
        const [claimed] = yield* claim
        assert.deepStrictEqual(yield* Effect.all([setting, setting, setting], { concurrency: 2 }), ["on", "on", "on"])
        // Marking executions awaited likewise.
        const marked = yield* sql.withTransaction(Effect.gen(function*() {
          assert.deepStrictEqual(yield* store.awaitOutcomes([claimed!.id]), { outcomes: [], busy: [] })
          return yield* setting
        }))
        assert.strictEqual(marked, "off")
        yield* store.awaitOutcomes([claimed!.id])
        assert.deepStrictEqual(yield* Effect.all([setting, setting, setting], { concurrency: 2 }), ["on", "on", "on"])
      }).pipe(Effect.provide(PgStore.layer({ migrate: false }).pipe(Layer.provideMerge(client))))
    }))

  it.effect("a claim rewrites its rows in place: every one a heap-only update, with no new index entry", () =>
    Effect.gen(function*() {
      const store = yield* Store
      const sql = yield* SqlClient.SqlClient
      yield* store.insert(Array.from({ length: 200 }, (_, i) => ({
        id: crypto.randomUUID(), task: "job", queue: "in-place", payload: { n: i, text: "x".repeat(i) }, priority: 0, maxAttempts: 3
      })))
      // The table's counts on this connection (they include what it has not reported
      // yet from earlier transactions, which stays put until this one ends).
      const counts = Effect.map(
        sql<{ updated: number; hot: number }>`
          SELECT n_tup_upd::int AS updated, n_tup_hot_upd::int AS hot FROM pg_stat_xact_user_tables
          WHERE schemaname = 'conductor' AND relname = 'executions'`,
        (rows) => rows[0]!
      )
      const updates = yield* sql.withTransaction(Effect.gen(function*() {
        const before = yield* counts
        const claimed = yield* store.claim({ queue: "in-place", tasks: ["job"], limit: 200, workerId: crypto.randomUUID(), leaseMillis: 30_000 })
        assert.strictEqual(claimed.length, 200)
        const after = yield* counts
        return { updated: after.updated - before.updated, hot: after.hot - before.hot }
      }))
      assert.deepStrictEqual(updates, { updated: 200, hot: 200 })
    }))

  it.effect("a claim given the last execution of a full claim starts after it, and fills up from the head when what follows runs short", () =>
    Effect.gen(function*() {
      const store = yield* Store
      const worker = crypto.randomUUID()
      const claim = (limit: number, after?: string) =>
        Effect.map(
          store.claim({ queue: "cursor", tasks: ["job"], limit, workerId: worker, leaseMillis: 30_000, after }),
          (claimed) => claimed.map((c) => c.id)
        )
      const row = (priority: number) => ({ id: crypto.randomUUID(), task: "job", queue: "cursor", payload: {}, priority, maxAttempts: 3 })
      // One statement, one run_at: their claim order is their ids'.
      const backlog = Array.from({ length: 6 }, () => row(0)).sort((a, b) => a.id < b.id ? -1 : 1)
      const [a1, a2, a3, a4, a5, a6] = backlog.map((r) => r.id)
      yield* store.insert(backlog)
      assert.deepStrictEqual(yield* claim(2), [a1, a2])
      // Before the cursor in claim order: left to a claim without one while the rows after it suffice.
      const urgent = row(5)
      yield* store.insert([urgent])
      assert.deepStrictEqual(yield* claim(2, a2), [a3, a4])
      // Two rows after the cursor for a claim of three: the third comes from the head.
      assert.deepStrictEqual(yield* claim(3, a4), [urgent.id, a5, a6])
      // A cursor no longer in the table (finished since): a claim from the head.
      const late = Array.from({ length: 2 }, () => row(0)).sort((a, b) => a.id < b.id ? -1 : 1)
      yield* store.insert(late)
      yield* store.finish(worker, [{ _tag: "Completed", id: a6!, result: null }])
      assert.deepStrictEqual(yield* claim(5, a6), late.map((r) => r.id))
    }))

  it.effect("completions of tasks that keep none are deleted, with their steps when they may have some; an awaited one is finished as usual", () =>
    Effect.gen(function*() {
      const store = yield* Store
      const worker = crypto.randomUUID()
      const row = () => ({ id: crypto.randomUUID(), task: "job", queue: "keepless", payload: {}, priority: 0, maxAttempts: 3 })
      const [plain, awaited, stepped, plain2] = [row(), row(), row(), row()]
      yield* store.insert([plain, awaited, stepped, plain2])
      const claimed = yield* store.claim({ queue: "keepless", tasks: ["job"], limit: 4, workerId: worker, leaseMillis: 30_000 })
      assert.strictEqual(claimed.length, 4)
      yield* store.recordSteps(worker, [{ executionId: stepped.id, record: { name: "s", kind: "step", value: 1, error: undefined, attempt: 1 } }])
      yield* store.awaitOutcomes([awaited.id])
      const completed = (id: string, steps: boolean) => ({ _tag: "Completed" as const, id, result: 7, discard: { steps } })
      // A batch with no step records to delete, then one with.
      yield* store.finish(worker, [completed(plain.id, false), completed(awaited.id, false)])
      yield* store.finish(worker, [completed(stepped.id, true), completed(plain2.id, false)])
      for (const gone of [plain, stepped, plain2]) assert.isUndefined(yield* store.get(gone.id))
      assert.deepStrictEqual(yield* store.steps(stepped.id), [])
      const kept = yield* store.get(awaited.id)
      assert.strictEqual(kept?.status, "completed")
      assert.deepStrictEqual((yield* store.outcomes([awaited.id])).map((o) => o.id), [awaited.id])
    }))

  it.effect("finishing a batch names the awaited executions to result waiters, in notifications that fit, and no others", () =>
    Effect.gen(function*() {
      const store = yield* Store
      const worker = "00000000-0000-4000-8000-00000000000d"
      const signals = yield* store.signals
      yield* listening(signals)
      const rows = Array.from({ length: 500 }, () => ({ id: crypto.randomUUID(), task: "job", queue: "fids", payload: {}, priority: 0, maxAttempts: 3 }))
      yield* store.insert(rows)
      const claimed = yield* store.claim({ queue: "fids", tasks: ["job"], limit: 500, workerId: worker, leaseMillis: 30_000 })
      assert.strictEqual(claimed.length, 500)
      const awaited = new Set(rows.slice(0, 450).map((r) => r.id))
      assert.deepStrictEqual(yield* store.awaitOutcomes([...awaited]), { outcomes: [], busy: [] })
      yield* store.finish(worker, claimed.map((c) => ({ _tag: "Completed" as const, id: c.id, result: null })))
      const named = new Set<string>()
      let notifications = 0
      while ([...awaited].some((id) => !named.has(id))) {
        const signal = yield* PubSub.take(signals)
        if (signal._tag !== "Finished") continue
        assert.isDefined(signal.ids)
        notifications++
        for (const id of signal.ids!) named.add(id)
      }
      // The 50 nobody awaited are in no notification; 8000-byte payloads: 190 ids at most in each.
      assert.deepStrictEqual([...named].sort(), [...awaited].sort())
      assert.strictEqual(notifications, 3)
      const read = yield* store.awaitOutcomes(rows.map((r) => r.id))
      assert.strictEqual(read.outcomes.length, 500)
      assert.deepStrictEqual(read.busy, [])
    }).pipe(Effect.scoped))

  it.effect("marking a row another statement holds does not wait for it: it comes back busy and is marked once free", () =>
    Effect.gen(function*() {
      const { url } = yield* TestDatabase
      const sql = yield* SqlClient.SqlClient
      const [row] = yield* (yield* Store).insert([{ id: crypto.randomUUID(), task: "job", queue: "held", payload: {}, priority: 0, maxAttempts: 3 }])
      const id = row!.id
      const other = yield* Layer.build(storeOn(url, { migrate: false }))
      const waiter = Context.get(other, Store)
      const awaited = sql<{ awaited: boolean }>`SELECT awaited FROM conductor.executions WHERE id = ${id}`.pipe(Effect.map(([r]) => r!.awaited))
      const whileHeld = yield* Effect.gen(function*() {
        yield* sql`SELECT 1 FROM conductor.executions WHERE id = ${id} FOR UPDATE`
        return yield* waiter.awaitOutcomes([id])
      }).pipe(sql.withTransaction)
      assert.deepStrictEqual(whileHeld, { outcomes: [], busy: [id] })
      assert.isFalse(yield* awaited)
      assert.deepStrictEqual(yield* waiter.awaitOutcomes([id]), { outcomes: [], busy: [] })
      assert.isTrue(yield* awaited)
    }).pipe(Effect.scoped))

  it.effect("marking pending executions wakes their queue (a claim running meanwhile skipped them and came back short)", () =>
    Effect.gen(function*() {
      const store = yield* Store
      const signals = yield* store.signals
      yield* listening(signals)
      const woken = workFor(signals, "marked")
      const [row] = yield* store.insert([{ id: crypto.randomUUID(), task: "job", queue: "marked", payload: {}, priority: 0, maxAttempts: 3 }])
      yield* woken // the insert's own
      assert.deepStrictEqual(yield* store.awaitOutcomes([row!.id]), { outcomes: [], busy: [] })
      yield* woken // the mark's
    }).pipe(Effect.scoped))

  it.effect("a dedupe hit on a pending execution wakes its queue too (its upsert held the row a claim may have skipped)", () =>
    Effect.gen(function*() {
      const store = yield* Store
      const signals = yield* store.signals
      yield* listening(signals)
      const woken = workFor(signals, "deduped")
      const execution = { task: "job", queue: "deduped", payload: {}, priority: 0, maxAttempts: 3, dedupeKey: "once" }
      const [first] = yield* store.insert([{ ...execution, id: crypto.randomUUID() }])
      yield* woken
      const [again] = yield* store.insert([{ ...execution, id: crypto.randomUUID() }])
      assert.strictEqual(again!.id, first!.id)
      assert.isFalse(again!.created)
      yield* woken
    }).pipe(Effect.scoped))

  it.effect("a result waiter learns of the finish from the finish itself, not from its periodic check, and then only reads", () =>
    Effect.gen(function*() {
      const conductor = yield* Conductor
      const sql = yield* SqlClient.SqlClient
      // The store listens before the waiter subscribes: a listener starting
      // with the waiter would begin with Reconnected, which marks every awaited id.
      yield* listening(yield* (yield* Store).signals)
      const id = yield* conductor.invoke(Job, { n: 41 })
      // The waiter's store, counting its marks (an UPDATE each) and its plain reads.
      const calls = { marks: 0, reads: 0 }
      const counted = Layer.effect(Store, Effect.map(Effect.service(Store), (store) => Store.of({
        ...store,
        awaitOutcomes: (ids) => Effect.suspend(() => (calls.marks++, store.awaitOutcomes(ids))),
        outcomes: (ids) => Effect.suspend(() => (calls.reads++, store.outcomes(ids)))
      })))
      // A second client whose clock never moves: its periodic check never runs.
      // Fresh: this file's stack already built Conductor.layer, and a build would return that one.
      const waiter = Context.get(
        yield* Layer.build(Layer.fresh(Conductor.layer).pipe(Layer.provide(counted))).pipe(Effect.provide(TestClock.layer())),
        Conductor
      )
      const result = yield* Effect.forkChild(waiter.result(Job, id))
      // Finished only after the waiter has marked it.
      while (!(yield* sql<{ awaited: boolean }>`SELECT awaited FROM conductor.executions WHERE id = ${id}`)[0]!.awaited) {
        yield* Effect.sleep("1 millis")
      }
      yield* withWorker(JobLive, {}, conductor.result(Job, id))
      assert.strictEqual(yield* Fiber.join(result), 42)
      // Marked once, when first awaited; the finish named it, so it was read, not marked again.
      assert.deepStrictEqual(calls, { marks: 1, reads: 1 })
    }).pipe(Effect.scoped))

  it.effect("promoting a large wave of due work reports that more is due", () =>
    Effect.gen(function*() {
      const store = yield* Store
      const rows = Array.from({ length: 6000 }, () => ({
        id: crypto.randomUUID(), task: "job", queue: "wave", payload: {}, priority: 0, maxAttempts: 3, delayMillis: 50
      }))
      yield* store.insert(rows)
      yield* Effect.sleep("100 millis")
      const first = yield* store.promoteDue
      assert.isTrue(first.more)
      // What it left behind is due already.
      assert.isAtMost(first.next!, Date.now())
      assert.deepStrictEqual(yield* store.promoteDue, { next: undefined, more: false })
      assert.strictEqual(yield* count("conductor.executions WHERE status = 'pending' AND queue = 'wave'"), 6000)
    }))

  it.effect("a due execution another statement holds locked is reported as next, not dropped until the poll", () =>
    Effect.gen(function*() {
      const store = yield* Store
      const sql = yield* SqlClient.SqlClient
      const id = crypto.randomUUID()
      yield* store.insert([{ id, task: "job", queue: "held", payload: {}, priority: 0, maxAttempts: 3, delayMillis: 60_000 }])
      const dueAt = Date.now() - 1000
      yield* sql`UPDATE conductor.executions SET run_at = to_timestamp(${dueAt / 1000}) WHERE id = ${id}`
      const { release, released } = yield* holdRow(id)
      const skipped = yield* store.promoteDue
      assert.isFalse(skipped.more)
      assert.approximately(skipped.next!, dueAt, 1)
      yield* Deferred.succeed(release, undefined)
      yield* released
      assert.deepStrictEqual(yield* store.promoteDue, { next: undefined, more: false })
      assert.strictEqual((yield* store.get(id))!.status, "pending")
    }))

  it.effect("a handler whose lease was taken away is interrupted and writes nothing", () =>
    Effect.gen(function*() {
      const conductor = yield* Conductor
      const sql = yield* SqlClient.SqlClient
      const Slow = Task.make("slow", { payload: Schema.Struct({}), success: Schema.String })
      const started = yield* Deferred.make<void>()
      const finalized = yield* Deferred.make<void>()
      const SlowLive = Slow.toLayer(() =>
        Effect.andThen(Deferred.succeed(started, undefined), Effect.never).pipe(
          Effect.ensuring(Deferred.succeed(finalized, undefined))
        )
      )
      const id = yield* conductor.invoke(Slow, {})
      const other = "00000000-0000-4000-8000-0000000000ff"
      yield* withWorker(SlowLive, { leaseDuration: "3 seconds", heartbeatInterval: "100 millis" }, Effect.gen(function*() {
        yield* Deferred.await(started)
        yield* sql`UPDATE conductor.executions SET lease_owner = ${other} WHERE id = ${id}`
        yield* Deferred.await(finalized)
      }))
      const [row] = yield* sql<{ status: string; lease_owner: string }>`SELECT status, lease_owner FROM conductor.executions WHERE id = ${id}`
      assert.deepStrictEqual(row, { status: "running", lease_owner: other })
    }))
})

/**
 * A store listening (offers are made only while its listener is in place),
 * a worker id, and what that worker's row has on offer.
 */
const offerSetUp = Effect.gen(function*() {
  const store = yield* Store
  const sql = yield* SqlClient.SqlClient
  yield* listening(yield* store.signals)
  const worker = crypto.randomUUID()
  const offered = Effect.map(
    sql<{ offered: number }>`SELECT offered FROM conductor.workers WHERE id = ${worker}`,
    (rows) => rows[0]!.offered
  )
  return { store, sql, worker, offered }
})

layer(pgStack(), { excludeTestServices: true })("offers", (it) => {
  it.effect("a claim that comes back short offers the slots free, less those dispatches on their way to the worker take", () =>
    Effect.scoped(Effect.gen(function*() {
      const { store, sql, worker, offered } = yield* offerSetUp
      const claim = (received: number) =>
        store.claim({ queue: "offers", tasks: ["t"], limit: 5, workerId: worker, leaseMillis: 60_000, offer: 3, offerMillis: 60_000, received })
      assert.deepStrictEqual(yield* claim(0), [])
      assert.strictEqual(yield* offered, 3)
      // Two invokes took slots; their NOTIFYs have not reached the worker.
      yield* sql`UPDATE conductor.workers SET dispatched = 2 WHERE id = ${worker}`
      yield* claim(0)
      assert.strictEqual(yield* offered, 1)
      yield* claim(2)
      assert.strictEqual(yield* offered, 3)
    })))

  it.effect("freed slots go back on a standing offer, never on one a claim, a lapse or a withdrawal ended", () =>
    Effect.scoped(Effect.gen(function*() {
      const { store, sql, worker, offered } = yield* offerSetUp
      const claim = (limit: number) =>
        store.claim({ queue: "offers", tasks: ["t"], limit, workerId: worker, leaseMillis: 60_000, offer: 3, offerMillis: 60_000, received: 2 })
      yield* claim(5)
      // Two invokes took slots; their executions ended and freed them.
      yield* sql`UPDATE conductor.workers SET offered = 1, dispatched = 2 WHERE id = ${worker}`
      yield* store.reoffer(worker, 2)
      assert.strictEqual(yield* offered, 3)
      // A claim that makes no new offer (here it came back full) ends the offer:
      // a slot given back after it does not revive it.
      yield* sql`INSERT INTO conductor.executions (id, task, queue, status, payload, max_attempts)
        VALUES (${crypto.randomUUID()}, 't', 'offers', 'pending', '{}', 1)`
      assert.strictEqual((yield* claim(1)).length, 1)
      yield* store.reoffer(worker, 1)
      assert.strictEqual(yield* offered, 0)
      // Nor a lapsed offer.
      yield* claim(5)
      yield* sql`UPDATE conductor.workers SET offered_until = now() - interval '1 second' WHERE id = ${worker}`
      yield* store.reoffer(worker, 1)
      assert.strictEqual(yield* offered, 3)
      yield* sql`UPDATE conductor.workers SET offered_until = now() + interval '1 minute' WHERE id = ${worker}`
      // A stopping worker withdrew its offer: a slot given back later does not revive it.
      assert.strictEqual(yield* store.withdrawOffer(worker), 2)
      yield* store.reoffer(worker, 1)
      assert.strictEqual(yield* offered, 0)
    })))
})

layer(pgStack(), { excludeTestServices: true })("retiring a worker", (it) => {
  it.effect("a worker's row goes only with no offer standing and every dispatch to it accounted for", () =>
    Effect.gen(function*() {
      const store = yield* Store
      const sql = yield* SqlClient.SqlClient
      const worker = crypto.randomUUID()
      const row = sql<{ id: string }>`SELECT id FROM conductor.workers WHERE id = ${worker}`
      yield* sql`INSERT INTO conductor.workers (id, expires_at, offered, dispatched) VALUES (${worker}, now() + interval '1 minute', 1, 3)`
      // An offer stands: an invoke may still hand it something.
      yield* store.retireWorker(worker, 3)
      assert.strictEqual((yield* row).length, 1)
      yield* sql`UPDATE conductor.workers SET offered = 0 WHERE id = ${worker}`
      // Three dispatched, two accounted for: one may be leased to it unseen.
      yield* store.retireWorker(worker, 2)
      assert.strictEqual((yield* row).length, 1)
      yield* store.retireWorker(worker, 3)
      assert.strictEqual((yield* row).length, 0)
    }))
})

layer(pgStack(), { excludeTestServices: true })("plans and table growth", (it) => {
  it.effect("the per-batch functions keep one generic plan, planned with sequential scans off", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const hot = ["claim", "finish", "requeue", "record_steps", "record_steps_careful", "start_children", "await_outcomes", "outcomes"]
      const found = yield* sql<{ proname: string; proconfig: Array<string> | null }>`
        SELECT p.proname, p.proconfig FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = 'conductor' AND p.proname IN ${sql.in(hot)} ORDER BY p.proname`
      // Three claims: the worker's (with its cursor, 0014) and the two before it (0011's with an
      // offer, 0004's without), kept for workers of earlier versions during a rolling upgrade.
      assert.deepStrictEqual(found.map((f) => f.proname), [...hot, "claim", "claim"].sort())
      for (const f of found) {
        assert.includeMembers(f.proconfig ?? [], ["enable_seqscan=off", "plan_cache_mode=force_generic_plan"], f.proname)
      }
    }))

  it.effect("every statement of the store stays on its indexes when a table grows far past the statistics of its first plans", () =>
    Effect.gen(function*() {
      const { url } = yield* TestDatabase
      const sql = yield* SqlClient.SqlClient
      const schema = "growth"
      // Two connections: the signal listener's, and one that runs every statement of the
      // store (so its statistics can be flushed from it).
      const context = yield* Layer.build(
        PgStore.layer({ schema }).pipe(Layer.provideMerge(PgClient.layer({ url: Redacted.make(url), maxConnections: 2 })))
      )
      const store = Context.get(context, Store)
      const own = Context.get(context, SqlClient.SqlClient)
      const rows = (n: number, status: string) =>
        sql.unsafe(`INSERT INTO ${schema}.executions (id, task, queue, status, payload, max_attempts, parent_id, lease_owner)
          SELECT gen_random_uuid(), 't', 'q', '${status}', '{}', 1, gen_random_uuid(),
                 ${status === "running" ? "gen_random_uuid()" : "NULL"}
          FROM generate_series(1, ${n})`)
      const history = (n: number) =>
        sql.unsafe(`INSERT INTO ${schema}.finished_executions (id, task, queue, status, priority, payload, attempts, max_attempts, parent_id, created_at)
          SELECT gen_random_uuid(), 't', 'q', 'completed', 0, '{}', 1, 1, gen_random_uuid(), now() FROM generate_series(1, ${n})`)
      const steps = (n: number) =>
        sql.unsafe(`INSERT INTO ${schema}.steps (execution_id, name, kind, value, attempt)
          SELECT gen_random_uuid(), 's', 'step', '1', 1 FROM generate_series(1, ${n})`)
      // A quiet start: a few rows, analyzed (as autovacuum does early on).
      yield* rows(20, "pending")
      yield* history(20)
      yield* steps(20)
      yield* sql.unsafe(`ANALYZE ${schema}.executions, ${schema}.finished_executions, ${schema}.steps`)
      const some = crypto.randomUUID()
      const worker = crypto.randomUUID()
      // The last execution of a worker's full claim, where its next claim starts.
      const cursor = crypto.randomUUID()
      yield* sql.unsafe(`INSERT INTO ${schema}.executions (id, task, queue, status, payload, max_attempts, lease_owner)
        VALUES ($1, 't', 'q', 'running', '{}', 1, $2)`, [cursor, worker])
      const probe = Effect.all([
        store.get(some),
        store.children(some),
        store.steps(some),
        store.unknownIds([some]),
        store.cancel(some, "nothing there"),
        store.heartbeat(worker, [some], 60_000),
        // Not `orphans`: it scans, and runs only after a failed claim.
        store.promoteDue,
        store.recoverExpiredLeases,
        store.claim({ queue: "nobody", tasks: ["t"], limit: 10, workerId: worker, leaseMillis: 60_000 }),
        // From a cursor (0014): the queue's rows after it, then from the head (no task matches: nothing taken).
        store.claim({ queue: "q", tasks: ["nobody"], limit: 10, workerId: worker, leaseMillis: 60_000, after: cursor }),
        // The claims kept for workers of earlier versions: before direct dispatch (0010's), and before cursors (0013's).
        own.unsafe(`SELECT * FROM ${schema}.claim('nobody', ARRAY['t'], 10, $1::uuid, 60000)`, [worker]),
        own.unsafe(`SELECT * FROM ${schema}.claim('nobody', ARRAY['t'], 10, $1::uuid, 60000, 0, 0, 0)`, [worker]),
        // Per-batch statements: finish, requeue, step and child writes, and the result waiters' marks.
        store.finish(worker, [{ _tag: "Completed", id: some, result: null }, { _tag: "Released", id: crypto.randomUUID() }]),
        store.awaitOutcomes([some]),
        store.recordSteps(worker, [{ executionId: some, record: { name: "s", kind: "step", value: 1, error: undefined, attempt: 1 } }]),
        store.startChildren(worker, [{
          id: crypto.randomUUID(), task: "c", queue: "q", payload: {}, priority: 0, maxAttempts: 1, delayMillis: undefined,
          parentId: some, parentStep: "c", attempt: 1, timeoutMillis: undefined
        }])
      ])
      // Past the point where Postgres keeps a prepared statement's generic plan.
      for (let i = 0; i < 8; i++) yield* probe
      // Then a burst, before autovacuum has analyzed again.
      yield* rows(30_000, "pending")
      yield* rows(20_000, "running")
      yield* history(50_000)
      yield* steps(50_000)
      const seqScans = Effect.gen(function*() {
        yield* own`SELECT pg_stat_force_next_flush()`
        yield* own`SELECT 1` // the flush happens at the end of a transaction on that connection
        const found = yield* sql<{ relname: string; seq_scan: number }>`
          SELECT relname, seq_scan::int FROM pg_stat_user_tables
          WHERE schemaname = ${schema} AND relname <> 'workers' -- a row per live worker: lease recovery reads them all
          ORDER BY relname`
        return Object.fromEntries(found.map((r) => [r.relname, r.seq_scan]))
      })
      const before = yield* seqScans
      yield* probe
      assert.deepStrictEqual(yield* seqScans, before)
    }).pipe(Effect.scoped))
})
