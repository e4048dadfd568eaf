/**
 * Direct dispatch on Postgres (migrations/0011): an idle worker offers its
 * free slots, and a single invoke leases its execution to it in the insert
 * itself, the NOTIFY carrying the execution. What a worker never hears of
 * (a lost NOTIFY, a shutdown) goes back to the queue.
 */
import { assert, layer } from "@effect/vitest"
import { Deferred, Effect, Layer, Queue, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { Conductor } from "../src/Conductor.ts"
import { queries } from "../src/internal/pg/queries.ts"
import { Store } from "../src/internal/Store.ts"
import { Worker } from "../src/Worker.ts"
import * as Task from "../src/Task.ts"
import { pgStack, withWorker } from "./support/stack.ts"

const Job = Task.make("job", { payload: Schema.Struct({ n: Schema.Number, text: Schema.optional(Schema.String) }), success: Schema.Number })
const JobLive = Job.toLayer(({ n }) => Effect.succeed(n * 2))

/** No safety poll: claims come from signals only. */
const worker = { concurrency: 2, prefetch: 0, pollInterval: "1 hour" } as const

/**
 * Logs the ends of the worker's claims, heartbeats and lease recoveries, and
 * reports each one. A worker's own statements lock its row in `workers` for
 * a moment, and an invoke passes a locked worker by: the tests invoke once
 * those of its start-up are over.
 */
const loggedWorker = Effect.gen(function*() {
  const ended = yield* Queue.unbounded<void>()
  const log: Array<string> = []
  /** Every execution a claim took. */
  const claimedIds = new Set<string>()
  const logged = <A, E>(name: string, effect: Effect.Effect<A, E>) =>
    Effect.ensuring(effect, Effect.sync(() => {
      log.push(name)
      Queue.offerUnsafe(ended, undefined)
    }))
  const layer = Layer.effect(
    Store,
    Effect.map(Effect.service(Store), (store) =>
      Store.of({
        ...store,
        claim: (options) =>
          logged(
            "claim",
            Effect.tap(store.claim(options), (claimed) => Effect.sync(() => claimed.forEach((e) => claimedIds.add(e.id))))
          ),
        heartbeat: (workerId, ids, leaseMillis) => logged("heartbeat", store.heartbeat(workerId, ids, leaseMillis)),
        reoffer: (workerId, slots) => logged("reoffer", store.reoffer(workerId, slots)),
        recoverExpiredLeases: logged("recover", store.recoverExpiredLeases)
      }))
  )
  /**
   * Returns once the worker has slots on offer and its start-up statements
   * are over: its first heartbeat, and its first maintenance pass (a lease
   * recovery, then a claim). Its first claim may go out before its listener
   * is up, and then offers nothing; the listener's Reconnected wakes another.
   */
  const quietWithOffer = Effect.gen(function*() {
    while (true) {
      const recovered = log.indexOf("recover")
      const settled = log.includes("heartbeat") && recovered >= 0 && log.indexOf("claim", recovered) >= 0
      if (settled && (yield* offered) > 0) return
      yield* Queue.take(ended)
    }
  })
  /** Returns once the worker has `n` slots on offer (after one of its statements, a slot given back, say). */
  const offering = (n: number) =>
    Effect.gen(function*() {
      while ((yield* offered) < n) yield* Queue.take(ended)
    })
  return { claimedIds, quietWithOffer, offering, layer }
})

/** Slots the worker of the test's body has on offer now. */
const offered = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const { id } = yield* Worker
  const rows = yield* sql<{ offered: number }>`SELECT offered FROM conductor.workers WHERE id = ${id}`
  return rows[0]?.offered ?? 0
})

/**
 * An invoke as `Conductor.invoke` sends it (queries.ts `insertOne`), whose
 * NOTIFY goes to a channel nobody listens on: a dispatch whose signal was
 * lost. An invoke that finds the worker's row held by one of its own
 * statements (a heartbeat) is not dispatched, but claimed and run: then try
 * again once the worker offers again.
 */
const dispatchUnheard = <E, R>(n: number, quietWithOffer: Effect.Effect<void, E, R>) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    for (let tries = 0; tries < 20; tries++) {
      const id = crypto.randomUUID()
      const [row] = yield* sql.unsafe<{ status: string }>(queries('"conductor"').insertOne, [
        id, "job", "default", 0, JSON.stringify({ n }), 3, null, null, null, null, null, "nobody_listens"
      ])
      if (row!.status === "running") return id
      yield* quietWithOffer
    }
    return assert.fail("never dispatched")
  })

layer(pgStack(), { excludeTestServices: true })("direct dispatch", (it) => {
  it.effect("an idle worker is handed a single invoke by the invoke's own statement: no claim, attempt 1", () =>
    Effect.gen(function*() {
      const conductor = yield* Conductor
      const { claimedIds, quietWithOffer, layer } = yield* loggedWorker
      const { result, attempts } = yield* withWorker(JobLive, worker, Effect.gen(function*() {
        // An invoke that meets the worker's row held by one of its own
        // statements (a claim its listener's first signal asked for) is
        // claimed instead: then try again.
        for (let tries = 0; tries < 20; tries++) {
          yield* quietWithOffer
          const id = yield* conductor.invoke(Job, { n: 21 })
          const result = yield* conductor.result(Job, id)
          if (!claimedIds.has(id)) return { result, attempts: (yield* conductor.get(id)).attempts }
        }
        return assert.fail("every invoke was claimed")
      })).pipe(Effect.provide(layer), Effect.timeout("20 seconds"))
      assert.strictEqual(result, 42)
      assert.strictEqual(attempts, 1)
    }))

  it.effect("slots freed after their dispatches go back on the offer: invoke after invoke is handed over, none claimed", () =>
    Effect.gen(function*() {
      const conductor = yield* Conductor
      const { claimedIds, quietWithOffer, offering, layer } = yield* loggedWorker
      const { ids, seen } = yield* withWorker(JobLive, worker, Effect.gen(function*() {
        // The first dispatched one: an invoke that meets the worker's row held
        // by one of its start-up claims is claimed instead (see above).
        for (let tries = 0; tries < 20; tries++) {
          yield* quietWithOffer
          const id = yield* conductor.invoke(Job, { n: -1 })
          yield* conductor.result(Job, id)
          if (!claimedIds.has(id)) break
        }
        const ids: Array<string> = []
        const seen: Array<number> = []
        // Two slots offered: without them given back, the second invoke from
        // here found none and was claimed.
        for (let n = 0; n < 6; n++) {
          // Given back once half the offer is free again (here, after each).
          // Without that, the offer stays short: go on, and the claims show it.
          yield* Effect.timeoutOption(offering(2), "5 seconds")
          seen.push(yield* offered)
          const id = yield* conductor.invoke(Job, { n })
          assert.strictEqual(yield* conductor.result(Job, id), n * 2)
          ids.push(id)
        }
        return { ids, seen }
      })).pipe(Effect.provide(layer), Effect.timeout("60 seconds"))
      assert.deepStrictEqual(ids.filter((id) => claimedIds.has(id)), [])
      // Never more than the worker's two slots.
      assert.deepStrictEqual(seen, [2, 2, 2, 2, 2, 2])
    }))

  it.effect("a payload too large for a NOTIFY, and an invoke inside the caller's transaction, wait for a claim", () =>
    Effect.gen(function*() {
      const conductor = yield* Conductor
      const sql = yield* SqlClient.SqlClient
      const { claimedIds, quietWithOffer, layer } = yield* loggedWorker
      yield* withWorker(JobLive, worker, Effect.gen(function*() {
        yield* quietWithOffer
        const large = yield* conductor.invoke(Job, { n: 1, text: "x".repeat(8000) })
        assert.strictEqual(yield* conductor.result(Job, large), 2)
        assert.isTrue(claimedIds.has(large), "claimed")

        yield* quietWithOffer
        const inside = yield* sql.withTransaction(Effect.gen(function*() {
          const id = yield* conductor.invoke(Job, { n: 2 })
          // Not leased to the worker: its row would stay locked until this commit.
          const [row] = yield* sql<{ status: string }>`SELECT status FROM conductor.executions WHERE id = ${id}`
          assert.strictEqual(row!.status, "pending")
          return id
        }))
        assert.strictEqual(yield* conductor.result(Job, inside), 4)
        assert.isTrue(claimedIds.has(inside), "claimed")
      })).pipe(Effect.provide(layer), Effect.timeout("20 seconds"))
    }))

  it.effect("a worker that stops gives back what was dispatched to it and never reached it, its attempt unused", () =>
    Effect.gen(function*() {
      const conductor = yield* Conductor
      const sql = yield* SqlClient.SqlClient
      const { quietWithOffer, layer } = yield* loggedWorker
      const id = yield* withWorker(JobLive, worker, Effect.andThen(quietWithOffer, dispatchUnheard(5, quietWithOffer))).pipe(
        Effect.provide(layer),
        Effect.timeout("20 seconds")
      )
      const [row] = yield* sql<{ status: string; attempts: number; lease_owner: string | null }>`
        SELECT status, attempts, lease_owner FROM conductor.executions WHERE id = ${id}`
      assert.deepStrictEqual(row, { status: "pending", attempts: 0, lease_owner: null })
      assert.deepStrictEqual(yield* sql`SELECT id FROM conductor.workers`, [])
      assert.strictEqual(yield* withWorker(JobLive, worker, conductor.result(Job, id)).pipe(Effect.timeout("20 seconds")), 10)
      assert.strictEqual((yield* conductor.get(id)).attempts, 1)
    }))

  it.effect("a dispatch whose NOTIFY never arrives, the listener up all along, is found by the heartbeats' count and runs", () =>
    Effect.gen(function*() {
      const conductor = yield* Conductor
      const { quietWithOffer, layer } = yield* loggedWorker
      const { result, attempts, offeredAfter } = yield* withWorker(JobLive, { ...worker, heartbeatInterval: "200 millis" }, Effect.gen(function*() {
        yield* quietWithOffer
        const id = yield* dispatchUnheard(4, quietWithOffer)
        const result = yield* conductor.result(Job, id)
        return { result, attempts: (yield* conductor.get(id)).attempts, offeredAfter: yield* offered }
      })).pipe(Effect.provide(layer), Effect.timeout("20 seconds"))
      assert.strictEqual(result, 8)
      // Given back with its attempt unused, then claimed.
      assert.strictEqual(attempts, 1)
      // Its listener looks dead: the claim that took it offered nothing.
      assert.strictEqual(offeredAfter, 0)
    }))

  it.effect("what was dispatched while the listener's connection was lost is given back once it is in place again, and runs", () =>
    Effect.gen(function*() {
      const conductor = yield* Conductor
      const sql = yield* SqlClient.SqlClient
      const { quietWithOffer, layer } = yield* loggedWorker
      // Heartbeats too far apart to find the loss within the test's time: only the reconnect can.
      const { result, attempts } = yield* withWorker(JobLive, { ...worker, heartbeatInterval: "25 seconds" }, Effect.gen(function*() {
        yield* quietWithOffer
        const id = yield* dispatchUnheard(8, quietWithOffer)
        const dropped = yield* sql<{ pid: number }>`
          SELECT pg_terminate_backend(pid) AS pid FROM pg_stat_activity
          WHERE datname = current_database() AND query ILIKE 'LISTEN%'`
        assert.strictEqual(dropped.length, 1)
        const result = yield* conductor.result(Job, id)
        return { result, attempts: (yield* conductor.get(id)).attempts }
      })).pipe(Effect.provide(layer), Effect.timeout("20 seconds"))
      assert.strictEqual(result, 16)
      // Given back with its attempt unused, then claimed.
      assert.strictEqual(attempts, 1)
    }))
  // Last: its handler never ends, and its worker's row stays.
  it.effect("at shutdown, a handler left running keeps its execution while one dispatched unseen is given back", () =>
    Effect.gen(function*() {
      const conductor = yield* Conductor
      const sql = yield* SqlClient.SqlClient
      const started = yield* Deferred.make<void>()
      const Stuck = Task.make("stuck", { payload: Schema.Struct({}) })
      // Ignores interruption: shutdown leaves it behind, lease and all.
      const StuckLive = Stuck.toLayer(() => Effect.uninterruptible(Effect.andThen(Deferred.succeed(started, undefined), Effect.never)))
      const { quietWithOffer, layer } = yield* loggedWorker
      const { stuck, unheard } = yield* withWorker(
        Layer.merge(JobLive, StuckLive),
        { ...worker, shutdownGrace: "100 millis" },
        Effect.gen(function*() {
          yield* quietWithOffer
          const stuck = yield* conductor.invoke(Stuck, {})
          yield* Deferred.await(started)
          return { stuck, unheard: yield* dispatchUnheard(3, quietWithOffer) }
        })
      ).pipe(Effect.provide(layer), Effect.timeout("20 seconds"))
      const rows = yield* sql<{ id: string; status: string; attempts: number }>`
        SELECT id, status, attempts FROM conductor.executions WHERE id IN (${stuck}, ${unheard})`
      const byId = new Map(rows.map((row) => [row.id, { status: row.status, attempts: row.attempts }]))
      assert.deepStrictEqual(byId.get(stuck), { status: "running", attempts: 1 })
      assert.deepStrictEqual(byId.get(unheard), { status: "pending", attempts: 0 })
    }))
})
