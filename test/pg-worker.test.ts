/**
 * The worker on Postgres: how it wakes (NOTIFY, timers, re-subscription),
 * timeouts, shutdown, and cancellation reaching running handlers.
 */
import { assert, layer } from "@effect/vitest"
import { Deferred, Effect, Layer, Queue, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { Conductor } from "../src/Conductor.ts"
import { StoreError } from "../src/Errors.ts"
import { Store } from "../src/internal/Store.ts"
import * as Durable from "../src/Durable.ts"
import * as Task from "../src/Task.ts"
import { holdRow } from "./support/locks.ts"
import { listening, workFor } from "./support/signals.ts"
import { pgStack, withWorker } from "./support/stack.ts"

class Rejected extends Schema.TaggedError<Rejected>()("Rejected", { reason: Schema.String }) {}

const Job = Task.make("job", { payload: Schema.Struct({ n: Schema.Number }), success: Schema.Number })
const JobLive = Job.toLayer(({ n }) => Effect.succeed(n * 2))

/** The ids of the workers that hold a lease (a row in `workers`). */
const workers = Effect.flatMap(Effect.service(SqlClient.SqlClient), (sql) =>
  Effect.map(sql<{ id: string }>`SELECT id FROM conductor.workers`, (rows) => rows.map((row) => row.id)))

/**
 * What lease recovery does to an execution whose worker it found dead, done
 * at once and without a NOTIFY: the worker's lease row goes (even when just
 * renewed), and the execution is pending again, its attempt used; or
 * scheduled for much later, so that no claim takes it until the test says.
 */
const recoveredAsDead = (id: string, as: "pending" | "scheduled" = "pending") =>
  Effect.flatMap(Effect.service(SqlClient.SqlClient), (sql) =>
    Effect.map(
      sql<{ id: string }>`WITH dead AS (
        DELETE FROM conductor.workers
        WHERE id = (SELECT lease_owner FROM conductor.executions WHERE id = ${id}) RETURNING id)
      UPDATE conductor.executions
      SET status = ${as}, lease_owner = NULL,
          run_at = CASE WHEN ${as} = 'scheduled' THEN now() + interval '1 day' ELSE run_at END
      WHERE id = ${id} AND lease_owner IN (SELECT id FROM dead) RETURNING id`,
      (rows) => assert.strictEqual(rows.length, 1, "recovered")
    ))

/** No safety poll: only NOTIFY and timers can make these workers claim. */
const noPoll = { pollInterval: "1 hour" } as const

layer(pgStack(), { excludeTestServices: true })("waking", (it) => {
  it.effect("an idle worker is woken by NOTIFY, not by its poll", () =>
    Effect.gen(function*() {
      const conductor = yield* Conductor
      const results = yield* withWorker(JobLive, noPoll, Effect.gen(function*() {
        const out: Array<number> = []
        for (const n of [1, 2, 3]) out.push(yield* conductor.result(Job, yield* conductor.invoke(Job, { n })))
        return out
      }))
      assert.deepStrictEqual(results, [2, 4, 6])
    }))

  it.effect("delayed work starts on time from a timer, not at the next poll", () =>
    Effect.gen(function*() {
      const conductor = yield* Conductor
      const sql = yield* SqlClient.SqlClient
      const { started, id } = yield* withWorker(JobLive, noPoll, Effect.gen(function*() {
        const id = yield* conductor.invoke(Job, { n: 5 }, { delay: "300 millis" })
        const [row] = yield* sql<{ status: string }>`SELECT status FROM conductor.executions WHERE id = ${id}`
        assert.strictEqual(row!.status, "scheduled")
        yield* conductor.result(Job, id)
        return { id, started: (yield* conductor.get(id)).startedAt! }
      }))
      const info = yield* conductor.get(id)
      const waited = started.getTime() - info.createdAt.getTime()
      assert.isAtLeast(waited, 290)
    }))

  it.effect("retries back off and are picked up by the worker's timer", () =>
    Effect.gen(function*() {
      const conductor = yield* Conductor
      const Flaky = Task.make("flaky", {
        payload: Schema.Struct({}),
        success: Schema.Number,
        maxAttempts: 3,
        retry: { base: "100 millis", jitter: false }
      })
      let calls = 0
      const FlakyLive = Flaky.toLayer(() => (++calls < 3 ? Effect.die("boom") : Effect.succeed(calls)))
      const id = yield* conductor.invoke(Flaky, {})
      assert.strictEqual(yield* withWorker(FlakyLive, noPoll, conductor.result(Flaky, id)), 3)
      const info = yield* conductor.get(id)
      assert.strictEqual(info.attempts, 3)
      // 100 ms after the first failure, 200 ms after the second.
      assert.isAtLeast(info.finishedAt!.getTime() - info.createdAt.getTime(), 300)
    }))

  it.effect("after the listening connection is lost, the worker re-subscribes and catches up", () =>
    Effect.gen(function*() {
      const conductor = yield* Conductor
      const sql = yield* SqlClient.SqlClient
      const result = yield* withWorker(JobLive, noPoll, Effect.gen(function*() {
        yield* conductor.result(Job, yield* conductor.invoke(Job, { n: 1 }))
        const killed = yield* sql<{ ok: boolean }>`
          SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity
          WHERE datname = current_database() AND query ILIKE 'LISTEN%'`
        assert.isAbove(killed.length, 0)
        return yield* conductor.result(Job, yield* conductor.invoke(Job, { n: 21 }))
      }))
      assert.strictEqual(result, 42)
    }))

  it.effect("a worker claims only tasks it has handlers for", () =>
    Effect.gen(function*() {
      const conductor = yield* Conductor
      const Unhandled = Task.make("unhandled", { payload: Schema.Struct({}) })
      const orphan = yield* conductor.invoke(Unhandled, {})
      const id = yield* conductor.invoke(Job, { n: 1 })
      yield* withWorker(JobLive, {}, conductor.result(Job, id))
      const info = yield* conductor.get(orphan)
      assert.strictEqual(info.status, "pending")
      assert.strictEqual(info.attempts, 0)
    }))
})

layer(pgStack(), { excludeTestServices: true })("attempts", (it) => {
  it.effect("a timeout interrupts the handler (finalizers run) and fails the attempt", () =>
    Effect.gen(function*() {
      const conductor = yield* Conductor
      const Sluggish = Task.make("sluggish", { payload: Schema.Struct({}), timeout: "100 millis", maxAttempts: 1 })
      const finalized = yield* Deferred.make<void>()
      const SluggishLive = Sluggish.toLayer(() =>
        Effect.never.pipe(Effect.ensuring(Deferred.succeed(finalized, undefined)))
      )
      const id = yield* conductor.invoke(Sluggish, {})
      const error = yield* withWorker(SluggishLive, {}, Effect.flip(conductor.result(Sluggish, id)))
      assert.isTrue(yield* Deferred.isDone(finalized))
      assert.strictEqual(error._tag, "ExecutionFailed")
      assert.match(error.message, /timed out after 100 ms/)
    }))

  it.effect("get shows status, attempts, timestamps and the last error", () =>
    Effect.gen(function*() {
      const conductor = yield* Conductor
      class Nope extends Schema.TaggedError<Nope>()("Nope", { why: Schema.String }) {}
      const Failing = Task.make("failing", { payload: Schema.Struct({}), error: Nope, maxAttempts: 2, retry: { base: "10 millis" } })
      const id = yield* conductor.invoke(Failing, {})
      const pending = yield* conductor.get(id)
      assert.strictEqual(pending.status, "pending")
      assert.strictEqual(pending.attempts, 0)
      const error = yield* withWorker(Failing.toLayer(() => Effect.fail(new Nope({ why: "no" }))), {}, Effect.flip(conductor.result(Failing, id)))
      assert.strictEqual(error._tag, "Nope")
      const info = yield* conductor.get(id)
      assert.strictEqual(info.status, "failed")
      assert.strictEqual(info.attempts, 2)
      assert.deepStrictEqual(info.lastError, { _tag: "Typed", value: { _tag: "Nope", why: "no" } })
      assert.isDefined(info.startedAt)
      assert.isAtLeast(info.finishedAt!.getTime(), info.createdAt.getTime())
    }))
})

/**
 * The store as it is, except that the first claim that takes something
 * commits and then fails as if the connection broke before its reply.
 */
const losingFirstClaimReply = Layer.effect(
  Store,
  Effect.gen(function*() {
    const store = yield* Store
    let lost = false
    return Store.of({
      ...store,
      claim: (options) =>
        Effect.flatMap(store.claim(options), (claimed) => {
          if (lost || claimed.length === 0) return Effect.succeed(claimed)
          lost = true
          return Effect.fail(new StoreError({ message: "Connection terminated before the reply", cause: undefined }))
        })
    })
  })
)

layer(pgStack(), { excludeTestServices: true })("a claim whose reply is lost", (it) => {
  it.effect("what it took goes back at once, its attempt given back, instead of waiting out the lease", () =>
    Effect.gen(function*() {
      const conductor = yield* Conductor
      const ids = yield* conductor.invokeMany(Job, [1, 2, 3].map((n) => ({ payload: { n } })))
      // A lease far longer than the test: only the give-back can bring them back in time.
      const results = yield* withWorker(JobLive, { leaseDuration: "10 minutes" }, Effect.forEach(ids, (id) => conductor.result(Job, id))).pipe(
        Effect.provide(losingFirstClaimReply),
        Effect.timeout("20 seconds")
      )
      assert.deepStrictEqual(results, [2, 4, 6])
      for (const id of ids) assert.strictEqual((yield* conductor.get(id)).attempts, 1)
    }))
})

layer(pgStack(), { excludeTestServices: true })("a claim that fails after the worker gave a lease up", (it) => {
  it.effect("does not give the attempt back: the lease ends as an expired one, the attempt used", () =>
    Effect.gen(function*() {
      const conductor = yield* Conductor
      const started = yield* Deferred.make<void>()
      const interrupted = yield* Deferred.make<void>()
      const lookedAfter = yield* Deferred.make<void>()
      let calls = 0
      const Stubborn = Task.make("stubborn-orphan", { payload: Schema.Struct({}), success: Schema.Number })
      // The first attempt runs until interrupted; the next one completes.
      const StubbornLive = Stubborn.toLayer(() =>
        ++calls > 1 ? Effect.succeed(calls) : Effect.andThen(Deferred.succeed(started, undefined), Effect.never).pipe(
          Effect.onInterrupt(() => Deferred.succeed(interrupted, undefined))
        )
      )
      // While "down", heartbeats and claims fail as if the database were out
      // of reach; the failed claims' look for orphans gets through.
      let down = false
      let gaveUp = false
      const flaky = Layer.effect(
        Store,
        Effect.map(Effect.service(Store), (store) => {
          const unreachable = Effect.fail(new StoreError({ message: "database unreachable", cause: undefined }))
          return Store.of({
            ...store,
            heartbeat: (workerId, ids, leaseMillis) => down ? unreachable : store.heartbeat(workerId, ids, leaseMillis),
            claim: (options) => down ? unreachable : store.claim(options),
            // Only a look that starts after the worker gave the lease up counts.
            orphans: (workerId, known) =>
              Effect.suspend(() => {
                const after = gaveUp
                return Effect.tap(store.orphans(workerId, known), () => after ? Deferred.succeed(lookedAfter, undefined) : Effect.void)
              })
          })
        })
      )
      const id = yield* conductor.invoke(Stubborn, {})
      const result = yield* withWorker(
        StubbornLive,
        { leaseDuration: "1 second", heartbeatInterval: "100 millis", pollInterval: "100 millis" },
        Effect.gen(function*() {
          yield* Deferred.await(started)
          down = true
          // The worker cannot renew its lease: it interrupts the attempt and gives the lease up.
          yield* Deferred.await(interrupted)
          gaveUp = true
          // A claim fails after that, and the worker looks for its orphans.
          yield* Deferred.await(lookedAfter)
          down = false
          return yield* conductor.result(Stubborn, id)
        })
      ).pipe(Effect.provide(flaky), Effect.timeout("20 seconds"))
      assert.strictEqual(result, 2)
      assert.strictEqual((yield* conductor.get(id)).attempts, 2)
    }))
})

/**
 * The store as it is, except that a claim first says it was entered, then
 * waits for the gate; writes of outcomes and the worker's retirement are
 * logged, in order.
 */
const gatedClaims = (entered: Deferred.Deferred<void>, gate: Deferred.Deferred<void>, log: Array<string>) =>
  Layer.effect(
    Store,
    Effect.map(Effect.service(Store), (store) =>
      Store.of({
        ...store,
        claim: (options) => Effect.andThen(Deferred.succeed(entered, undefined), Effect.andThen(Deferred.await(gate), store.claim(options))),
        finish: (workerId, outcomes) =>
          Effect.andThen(store.finish(workerId, outcomes), Effect.sync(() => log.push(outcomes.map((o) => o._tag).join(",")))),
        retireWorker: (workerId, dispatched) => Effect.andThen(Effect.sync(() => log.push("retire")), store.retireWorker(workerId, dispatched))
      }))
  )

/** The store as it is, except that reading the server's clock never answers: the worker's maintenance pass hangs. */
const clockNeverAnswers = Layer.effect(
  Store,
  Effect.map(Effect.service(Store), (store) => Store.of({ ...store, now: Effect.never }))
)

/**
 * The store as it is, with the worker's statements logged in order: a claim
 * (with its limit) when sent and when back, the periodic ones when sent, the
 * retention record when done, outcome writes when sent.
 */
const loggedStatements = (log: Array<string>) =>
  Layer.effect(
    Store,
    Effect.map(Effect.service(Store), (store) => {
      const sent = <A, E>(name: string, effect: Effect.Effect<A, E>) => Effect.andThen(Effect.sync(() => log.push(name)), effect)
      return Store.of({
        ...store,
        claim: (options) =>
          sent(`claim ${options.limit}`, Effect.tap(store.claim(options), (claimed) => Effect.sync(() => log.push(`claimed ${claimed.length}`)))),
        heartbeat: (workerId, ids, leaseMillis) => sent("heartbeat", store.heartbeat(workerId, ids, leaseMillis)),
        recoverExpiredLeases: sent("recover", store.recoverExpiredLeases),
        promoteDue: sent("promote", store.promoteDue),
        sweepFinished: (limit) => sent("sweep", store.sweepFinished(limit)),
        setRetention: (policies) => Effect.tap(store.setRetention(policies), () => Effect.sync(() => log.push("retention recorded"))),
        finish: (workerId, outcomes) => sent("finish", store.finish(workerId, outcomes))
      })
    })
  )

layer(pgStack(), { excludeTestServices: true })("starting", (it) => {
  it.effect("a fresh worker claims first, and only for its free slots; the rest of its room next, its periodic statements once the first claim is back", () =>
    Effect.gen(function*() {
      const conductor = yield* Conductor
      const ids = yield* conductor.invokeMany(Job, Array.from({ length: 10 }, (_, n) => ({ payload: { n } })))
      const log: Array<string> = []
      const results = yield* withWorker(JobLive, { concurrency: 2, prefetch: 4 }, Effect.forEach(ids, (id) => conductor.result(Job, id))).pipe(
        Effect.provide(loggedStatements(log)),
        Effect.timeout("20 seconds")
      )
      assert.deepStrictEqual(results, Array.from({ length: 10 }, (_, n) => n * 2))
      const claims = log.filter((entry) => entry.startsWith("claim "))
      // Two free slots; then the rest of the room (2 running + 4 buffered).
      assert.deepStrictEqual(claims.slice(0, 2), ["claim 2", "claim 4"], log.join(", "))
      const firstBack = log.indexOf("claimed 2")
      const periodic = ["heartbeat", "recover", "promote", "sweep"].map((name) => log.indexOf(name))
      for (const at of periodic) assert.isAbove(at, firstBack, log.join(", "))
      // What this worker finishes expires by its tasks' contracts: no outcome is written before.
      assert.isBelow(log.indexOf("retention recorded"), log.indexOf("finish"), log.join(", "))
    }))

  it.effect("a worker claims what was queued before it started at once, not after its first maintenance pass", () =>
    Effect.gen(function*() {
      const conductor = yield* Conductor
      const ran = yield* Deferred.make<number>()
      const Queued = Task.make("queued", { payload: Schema.Struct({ n: Schema.Number }) })
      // Queued, and its notification delivered, before the worker subscribes
      // to signals: no signal (Work, or the listener's first Reconnected) wakes
      // it. Nothing awaits the result either (marking it awaited would wake the queue).
      yield* Effect.scoped(Effect.gen(function*() {
        const signals = yield* (yield* Store).signals
        yield* listening(signals)
        yield* conductor.invoke(Queued, { n: 7 })
        yield* workFor(signals, "default")
      }))
      const n = yield* withWorker(
        Queued.toLayer(({ n }) => Deferred.succeed(ran, n)),
        {},
        Deferred.await(ran)
      ).pipe(Effect.provide(clockNeverAnswers), Effect.timeout("10 seconds"))
      assert.strictEqual(n, 7)
    }))
})

/** Every claim the worker sends: where it starts (`after`), its limit, and what it took. */
interface LoggedClaim {
  readonly after: string | undefined
  readonly limit: number
  claimed: ReadonlyArray<string>
}
const loggedClaims = (claims: Array<LoggedClaim>) =>
  Layer.effect(
    Store,
    Effect.map(Effect.service(Store), (store) =>
      Store.of({
        ...store,
        claim: (options) => {
          const entry: LoggedClaim = { after: options.after, limit: options.limit, claimed: [] }
          claims.push(entry)
          return Effect.tap(store.claim(options), (claimed) => Effect.sync(() => (entry.claimed = claimed.map((e) => e.id))))
        }
      }))
  )

layer(pgStack(), { excludeTestServices: true })("claiming a backlog", (it) => {
  it.effect("each claim starts where the previous full one ended, eight in a row at most, and the backlog is taken in claim order", () =>
    Effect.gen(function*() {
      const conductor = yield* Conductor
      // One statement: one run_at, so the claim order is the ids' order.
      const ids = yield* conductor.invokeMany(Job, Array.from({ length: 120 }, (_, n) => ({ payload: { n } })))
      // The handlers report here: awaiting results would mark pending rows, and a claim
      // passes over a row a mark holds at that moment.
      const ran = yield* Queue.unbounded<number>()
      const claims: Array<LoggedClaim> = []
      yield* withWorker(
        Job.toLayer(({ n }) => Effect.as(Queue.offer(ran, n), n * 2)),
        { concurrency: 2, prefetch: 2 },
        Effect.repeat(Queue.take(ran), { times: ids.length - 1 })
      ).pipe(Effect.provide(loggedClaims(claims)), Effect.timeout("20 seconds"))
      const taking = claims.filter((claim) => claim.claimed.length > 0)
      assert.deepStrictEqual(taking.flatMap((claim) => claim.claimed), [...ids].sort())
      let inARow = 0
      let fromCursor = 0
      claims.forEach((claim, i) => {
        if (claim.after === undefined) return void (inARow = 0)
        const previous = claims[i - 1]!
        assert.strictEqual(previous.claimed.length, previous.limit, "a cursor only after a full claim")
        assert.strictEqual(claim.after, previous.claimed.at(-1), "the last execution of the previous claim")
        assert.isAtMost(++inARow, 8)
        fromCursor++
      })
      // Start-up wakes the worker a few times (its listener, its first maintenance pass): then cursors.
      assert.isAtLeast(fromCursor, taking.length / 2, JSON.stringify(claims.map((c) => [c.after !== undefined, c.claimed.length])))
    }))

  it.effect("work announced during a backlog is claimed from the head: a higher priority goes next", () =>
    Effect.gen(function*() {
      const conductor = yield* Conductor
      const gate = yield* Deferred.make<void>()
      const entered = yield* Deferred.make<void>()
      const ran = yield* Queue.unbounded<string>()
      const claims: Array<LoggedClaim> = []
      /** Cursor claims in a row up to and including the one at `index`. */
      const cursorRun = (index: number) => {
        let run = 0
        while (claims[index - run]?.after !== undefined) run++
        return run
      }
      /**
       * The execution that holds the worker: the first, well into the backlog, whose claim
       * started from a cursor and was not the last of eight such claims in a row, so that
       * without the invoke the next claim would start from a cursor too.
       */
      let gated: string | undefined
      const holds = (id: string) => {
        if (gated !== undefined) return false
        const index = claims.findIndex((claim) => claim.claimed.includes(id))
        if (index < 10 || cursorRun(index) === 0 || cursorRun(index) >= 8) return false
        gated = id
        return true
      }
      const Gated = Task.make("gated", { payload: Schema.Struct({ n: Schema.Number }) })
      const GatedLive = Gated.toLayer(() =>
        Effect.flatMap(Durable.execution, (execution) =>
          Effect.andThen(
            Queue.offer(ran, execution.id),
            holds(execution.id) ? Effect.andThen(Deferred.succeed(entered, undefined), Deferred.await(gate)) : Effect.void
          ))
      )
      const backlog = yield* conductor.invokeMany(Gated, Array.from({ length: 40 }, (_, n) => ({ payload: { n } })))
      const urgent = yield* withWorker(GatedLive, { ...noPoll, concurrency: 1, prefetch: 0 }, Effect.gen(function*() {
        // Claims of one: the worker holds the gated execution and claims nothing more until it ends.
        yield* Deferred.await(entered)
        const signals = yield* (yield* Store).signals
        const urgent = yield* conductor.invoke(Gated, { n: -1 }, { priority: 5 })
        // Once this subscription has its Work signal, so has the worker's (one publish reaches
        // both); its next claim waits for the gated execution's outcome to be written.
        yield* workFor(signals, "default")
        yield* Deferred.succeed(gate, undefined)
        // Every execution has run (not awaited: a result waiter's mark holds a pending row a moment).
        yield* Effect.repeat(Queue.take(ran), { times: backlog.length })
        return urgent
      }).pipe(Effect.scoped)).pipe(Effect.provide(loggedClaims(claims)), Effect.timeout("20 seconds"))
      const taking = claims.filter((claim) => claim.claimed.length > 0)
      const holding = taking.findIndex((claim) => claim.claimed.includes(gated!))
      // The claim after the one that took the gated execution started from the head, and took the invoke.
      assert.deepStrictEqual(taking[holding + 1], { after: undefined, limit: 1, claimed: [urgent] }, JSON.stringify(claims))
      assert.deepStrictEqual(taking.flatMap((claim) => claim.claimed).sort(), [...backlog, urgent].sort())
    }))
})

layer(pgStack(), { excludeTestServices: true })("promotion", (it) => {
  it.effect("a due execution that was locked while its worker promoted runs once the lock goes, without waiting for the poll", () =>
    Effect.gen(function*() {
      const conductor = yield* Conductor
      const sql = yield* SqlClient.SqlClient
      const Due = Task.make("due", { payload: Schema.Struct({}), success: Schema.String })
      // The store's listener is up before the worker subscribes, so the worker
      // gets no Reconnected signal (which promotes at once); the invocation's
      // Scheduled signal goes out before it subscribes too.
      yield* Effect.scoped(Effect.flatMap((yield* Store).signals, listening))
      const id = yield* conductor.invoke(Due, {}, { delay: "1 minute" })
      yield* sql`UPDATE conductor.executions SET run_at = now() - interval '1 second' WHERE id = ${id}`
      // Another connection holds the row until the worker's first promotion has skipped it.
      const { release, released } = yield* holdRow(id)
      const promotedOnce = Layer.effect(
        Store,
        Effect.map(Effect.service(Store), (store) =>
          Store.of({ ...store, promoteDue: Effect.tap(store.promoteDue, () => Deferred.succeed(release, undefined)) }))
      )
      const result = yield* withWorker(
        Due.toLayer(() => Effect.succeed("ran")),
        { pollInterval: "1 hour" },
        Effect.andThen(released, conductor.result(Due, id))
      ).pipe(Effect.provide(promotedOnce), Effect.timeout("10 seconds"))
      assert.strictEqual(result, "ran")
    }))
})

layer(pgStack(), { excludeTestServices: true })("shutdown", (it) => {
  it.effect("running handlers finish within the grace period", () =>
    Effect.gen(function*() {
      const conductor = yield* Conductor
      const Short = Task.make("short", { payload: Schema.Struct({}), success: Schema.String })
      const started = yield* Deferred.make<void>()
      const ShortLive = Short.toLayer(() =>
        Effect.andThen(Deferred.succeed(started, undefined), Effect.as(Effect.sleep("200 millis"), "done"))
      )
      const id = yield* conductor.invoke(Short, {})
      // The worker's scope closes as soon as the handler has started.
      yield* withWorker(ShortLive, { shutdownGrace: "5 seconds" }, Deferred.await(started))
      const info = yield* conductor.get(id)
      assert.strictEqual(info.status, "completed")
    }))

  it.effect("past the grace period handlers are interrupted and released without using up an attempt", () =>
    Effect.gen(function*() {
      const conductor = yield* Conductor
      const sql = yield* SqlClient.SqlClient
      const Long = Task.make("long", { payload: Schema.Struct({}), success: Schema.String, maxAttempts: 1 })
      const started = yield* Deferred.make<void>()
      let finalizers = 0
      const LongLive = Long.toLayer(() =>
        Effect.andThen(Deferred.succeed(started, undefined), Effect.never).pipe(
          Effect.ensuring(Effect.sync(() => void finalizers++))
        )
      )
      // Connections doing something other than idling in the pool, besides this query.
      const busy = () =>
        sql<{ n: number }>`
          SELECT count(*)::int AS n FROM pg_stat_activity
          WHERE datname = current_database() AND pid <> pg_backend_pid()
            AND state <> 'idle' AND query NOT ILIKE 'LISTEN%'`.pipe(Effect.map((rows) => rows[0]!.n))
      const listeners = () =>
        sql<{ n: number }>`
          SELECT count(*)::int AS n FROM pg_stat_activity
          WHERE datname = current_database() AND query ILIKE 'LISTEN%'`.pipe(Effect.map((rows) => rows[0]!.n))
      const id = yield* conductor.invoke(Long, {})
      yield* withWorker(LongLive, { shutdownGrace: "100 millis" }, Deferred.await(started))
      assert.strictEqual(finalizers, 1)
      const released = yield* conductor.get(id)
      assert.strictEqual(released.status, "pending")
      assert.strictEqual(released.attempts, 0)
      // With maxAttempts 1, the next worker still gets its one attempt.
      const Quick = Long.toLayer(() => Effect.succeed("second worker"))
      assert.strictEqual(yield* withWorker(Quick, {}, conductor.result(Long, id)), "second worker")
      // Nothing the workers started is still running on the database, and the
      // process still has one listening connection (the store's), not one per worker.
      assert.strictEqual(yield* busy(), 0)
      assert.strictEqual(yield* listeners(), 1)
    }))

  it.effect("a handler that ignores interruption is left to its lease after a second grace period", () =>
    Effect.gen(function*() {
      const conductor = yield* Conductor
      const Stubborn = Task.make("stubborn", { payload: Schema.Struct({}), success: Schema.String })
      const started = yield* Deferred.make<void>()
      const StubbornLive = Stubborn.toLayer(() => Effect.uninterruptible(Effect.andThen(Deferred.succeed(started, undefined), Effect.never)))
      const id = yield* conductor.invoke(Stubborn, {})
      // Shutdown ends (about two grace periods) although the handler never does.
      yield* withWorker(StubbornLive, { shutdownGrace: "100 millis" }, Deferred.await(started)).pipe(Effect.timeout("10 seconds"))
      // Its execution is still leased: it runs again only once the lease expires.
      const left = yield* conductor.get(id)
      assert.strictEqual(left.status, "running")
      assert.strictEqual(left.attempts, 1)
      // The worker's lease stays for lease recovery to find once it expires.
      const sql = yield* SqlClient.SqlClient
      const [lease] = yield* sql<{ n: number }>`
        SELECT count(*)::int AS n FROM conductor.workers w JOIN conductor.executions e ON e.lease_owner = w.id WHERE e.id = ${id}`
      assert.strictEqual(lease!.n, 1)
    }))

  it.effect("a claim in flight at shutdown gives back what it took, and only then does the worker's lease go", () =>
    Effect.gen(function*() {
      const conductor = yield* Conductor
      const before = new Set(yield* workers)
      const ids = yield* conductor.invokeMany(Job, [1, 2, 3].map((n) => ({ payload: { n } })))
      const entered = yield* Deferred.make<void>()
      const gate = yield* Deferred.make<void>()
      const log: Array<string> = []
      // The first claim waits at the gate; the scope closes just as it goes out.
      yield* withWorker(JobLive, noPoll, Deferred.await(entered).pipe(Effect.ensuring(Deferred.succeed(gate, undefined)))).pipe(
        Effect.provide(gatedClaims(entered, gate, log))
      )
      assert.deepStrictEqual(log, ["Released,Released,Released", "retire"])
      for (const id of ids) {
        const info = yield* conductor.get(id)
        assert.strictEqual(info.status, "pending")
        assert.strictEqual(info.attempts, 0)
      }
      assert.deepStrictEqual((yield* workers).filter((id) => !before.has(id)), [])
    }))

  it.effect("an execution its worker still runs after its lease lapsed unnoticed, claimed again by that worker, is not started twice, and its attempt counts as the new claim's", () =>
    Effect.gen(function*() {
      const conductor = yield* Conductor
      // Fails, with two attempts allowed: the attempt that carries on is the second.
      const Slow = Task.make("slow-reclaimed", { payload: Schema.Struct({}), error: Rejected, maxAttempts: 2 })
      const Marker = Task.make("marker", { payload: Schema.Struct({}) })
      let starts = 0
      const started = yield* Deferred.make<void>()
      const markerStarted = yield* Deferred.make<void>()
      const gate = yield* Deferred.make<void>()
      const handlers = Layer.mergeAll(
        Slow.toLayer(() =>
          Effect.gen(function*() {
            const execution = yield* Durable.execution
            const attemptAtStart = execution.attempt
            ++starts
            yield* Durable.step("1 before", Effect.succeed(1))
            yield* Deferred.succeed(started, undefined)
            yield* Deferred.await(gate)
            // What it records from now on is the new claim's attempt too.
            yield* Durable.step("2 after", Effect.succeed(2))
            return yield* new Rejected({ reason: `start ${starts}, attempt ${attemptAtStart} then ${execution.attempt}` })
          })),
        Marker.toLayer(() => Deferred.succeed(markerStarted, undefined))
      )
      const id = yield* conductor.invoke(Slow, {})
      const result = yield* withWorker(handlers, { ...noPoll, leaseDuration: "1 hour", heartbeatInterval: "30 minutes" }, Effect.gen(function*() {
        yield* Deferred.await(started)
        // The worker's lease lapses without its noticing (its next heartbeat
        // is half an hour away) and is recovered. The marker's NOTIFY makes
        // the worker claim: the execution again, and the marker in that claim
        // or the next (claims go one at a time), so once the marker starts,
        // the worker has taken in the claim of the execution.
        yield* recoveredAsDead(id)
        yield* conductor.invoke(Marker, {})
        yield* Deferred.await(markerStarted)
        assert.strictEqual((yield* conductor.get(id)).attempts, 2, "claimed again")
        yield* Deferred.succeed(gate, undefined)
        return yield* Effect.flip(conductor.result(Slow, id))
      })).pipe(Effect.timeout("20 seconds"))
      assert.strictEqual(starts, 1, "the attempt still running went on under the new lease")
      assert.instanceOf(result, Rejected)
      assert.strictEqual((result as Rejected).reason, "start 1, attempt 1 then 2", "its Execution shows the new claim's attempt")
      const info = yield* conductor.get(id)
      assert.strictEqual(info.status, "failed", "its failure was the last attempt's: no retry")
      assert.strictEqual(info.attempts, 2, "the lapsed lease used up the first attempt")
      const sql = yield* SqlClient.SqlClient
      const steps = yield* sql<{ attempt: number }>`SELECT attempt FROM conductor.steps WHERE execution_id = ${id} ORDER BY name`
      assert.deepStrictEqual(steps.map((row) => row.attempt), [1, 2], "a step recorded after the new claim names its attempt")
    }))

  it.effect("an execution claimed again while its stale attempt is still being stopped starts again only once that attempt has ended", () =>
    Effect.gen(function*() {
      const conductor = yield* Conductor
      const sql = yield* SqlClient.SqlClient
      const Stubborn = Task.make("stubborn-reclaimed", { payload: Schema.Struct({}), success: Schema.Number })
      const Marker = Task.make("marker-2", { payload: Schema.Struct({}) })
      let starts = 0
      let inFlight = 0
      let mostAtOnce = 0
      const started = yield* Deferred.make<void>()
      const markerStarted = yield* Deferred.make<void>()
      const gate = yield* Deferred.make<void>()
      const handlers = Layer.mergeAll(
        // The first attempt ignores interruption until the gate opens.
        Stubborn.toLayer(() =>
          Effect.suspend(() => {
            const n = ++starts
            mostAtOnce = Math.max(mostAtOnce, ++inFlight)
            return Deferred.succeed(started, undefined).pipe(
              Effect.andThen(n === 1 ? Effect.uninterruptible(Deferred.await(gate)) : Effect.void),
              Effect.as(n),
              Effect.ensuring(Effect.sync(() => inFlight--))
            )
          })),
        Marker.toLayer(() => Deferred.succeed(markerStarted, undefined))
      )
      const id = yield* conductor.invoke(Stubborn, {})
      // The heartbeat after the one that reported the lease lost: by then the worker has stopped (tried to) the attempt.
      const lostSeen = yield* Deferred.make<void>()
      const afterLost = yield* Deferred.make<void>()
      const watchingHeartbeats = Layer.effect(
        Store,
        Effect.map(Effect.service(Store), (inner) =>
          Store.of({
            ...inner,
            heartbeat: (workerId, ids, leaseMillis) =>
              Effect.tap(
                Effect.andThen(
                  Effect.flatMap(Deferred.isDone(lostSeen), (seen) => seen ? Deferred.succeed(afterLost, undefined) : Effect.void),
                  inner.heartbeat(workerId, ids, leaseMillis)
                ),
                (answer) => answer.lost.includes(id) ? Deferred.succeed(lostSeen, undefined) : Effect.void
              )
          }))
      )
      const result = yield* withWorker(handlers, { ...noPoll, leaseDuration: "1 hour", heartbeatInterval: "100 millis" }, Effect.gen(function*() {
        yield* Deferred.await(started)
        // Recovered, but held back for now: a claim in flight (the worker's
        // second, answering the invoke's NOTIFY) must not take it yet. The
        // next heartbeat finds the worker's lease gone.
        yield* recoveredAsDead(id, "scheduled")
        yield* Deferred.await(afterLost)
        // Due now, and the marker's NOTIFY makes the worker claim both.
        yield* sql`UPDATE conductor.executions SET status = 'pending', run_at = now() WHERE id = ${id}`
        yield* conductor.invoke(Marker, {})
        yield* Deferred.await(markerStarted)
        assert.strictEqual(starts, 1, "not started again while the stale attempt runs")
        yield* Deferred.succeed(gate, undefined)
        return yield* conductor.result(Stubborn, id)
      })).pipe(Effect.provide(watchingHeartbeats), Effect.timeout("20 seconds"))
      assert.strictEqual(result, 2)
      assert.strictEqual(mostAtOnce, 1, "never two attempts at once")
      const info = yield* conductor.get(id)
      assert.strictEqual(info.status, "completed")
      assert.strictEqual(info.attempts, 2)
    }))

  it.effect("a worker's lease is one row while it runs, whatever it holds, and a clean shutdown removes it", () =>
    Effect.gen(function*() {
      const conductor = yield* Conductor
      const before = new Set(yield* workers)
      const Many = Task.make("many", { payload: Schema.Struct({ n: Schema.Number }), success: Schema.Number })
      const ManyLive = Many.toLayer(({ n }) => Effect.succeed(n))
      const during = yield* withWorker(ManyLive, { concurrency: 4 }, Effect.gen(function*() {
        const ids = yield* conductor.invokeMany(Many, Array.from({ length: 20 }, (_, n) => ({ payload: { n } })))
        for (const id of ids) yield* conductor.result(Many, id)
        return (yield* workers).filter((id) => !before.has(id))
      }))
      assert.strictEqual(during.length, 1)
      assert.notInclude(yield* workers, during[0])
    }))
})

layer(pgStack(), { excludeTestServices: true })("cancellation", (it) => {
  it.effect("cancelling a pending execution; cancelling a finished one returns false", () =>
    Effect.gen(function*() {
      const conductor = yield* Conductor
      const id = yield* conductor.invoke(Job, { n: 1 }, { delay: "1 hour" })
      assert.isTrue(yield* conductor.cancel(id, { reason: "not needed" }))
      const error = yield* Effect.flip(conductor.result(Job, id))
      assert.strictEqual(error._tag, "ExecutionCancelled")
      assert.match(error.message, /not needed/)
      assert.isFalse(yield* conductor.cancel(id))
      const done = yield* conductor.invoke(Job, { n: 2 })
      yield* withWorker(JobLive, {}, conductor.result(Job, done))
      assert.isFalse(yield* conductor.cancel(done))
      const unknown = yield* Effect.flip(conductor.cancel("00000000-0000-4000-8000-000000000000"))
      assert.strictEqual(unknown._tag, "ExecutionNotFound")
    }))

  it.effect("cancel reaches a running handler within a second, runs its finalizers and cascades to children", () =>
    Effect.gen(function*() {
      const conductor = yield* Conductor
      const Child = Task.make("child", { payload: Schema.Struct({ i: Schema.Number }), success: Schema.Number })
      const Parent = Task.make("parent", { payload: Schema.Struct({}), success: Schema.Number })
      const started = [yield* Deferred.make<void>(), yield* Deferred.make<void>()]
      const finalized = [yield* Deferred.make<void>(), yield* Deferred.make<void>()]
      const ChildLive = Child.toLayer(({ i }) =>
        Effect.andThen(Deferred.succeed(started[i]!, undefined), Effect.never).pipe(
          Effect.ensuring(Deferred.succeed(finalized[i]!, undefined))
        )
      )
      const ParentLive = Parent.toLayer(() =>
        Effect.all([0, 1].map((i) => Durable.invoke(`child-${i}`, Child, { i })), { concurrency: 2 }).pipe(
          Effect.map(([a, b]) => a! + b!),
          Effect.orDie
        )
      )
      const id = yield* conductor.invoke(Parent, {})
      const outcome = yield* withWorker(
        Layer.mergeAll(ChildLive, ParentLive),
        { ...noPoll, heartbeatInterval: "10 seconds", concurrency: 3 },
        Effect.gen(function*() {
          yield* Effect.forEach(started, Deferred.await)
          const requested = Date.now()
          assert.isTrue(yield* conductor.cancel(id, { reason: "operator" }))
          yield* Effect.forEach(finalized, Deferred.await)
          const latency = Date.now() - requested
          return { latency, error: yield* Effect.flip(conductor.result(Parent, id)) }
        })
      )
      // Delivered by NOTIFY (the heartbeat fallback is 10 s away here).
      assert.isBelow(outcome.latency, 1000)
      assert.strictEqual(outcome.error._tag, "ExecutionCancelled")
      const info = yield* conductor.get(id)
      assert.strictEqual(info.status, "cancelled")
      assert.deepStrictEqual(info.children.map((c) => c.status), ["cancelled", "cancelled"])
    }))

  it.effect("a cancel request whose NOTIFY was lost is picked up by the heartbeat", () =>
    Effect.gen(function*() {
      const conductor = yield* Conductor
      const sql = yield* SqlClient.SqlClient
      const Stuck = Task.make("stuck", { payload: Schema.Struct({}) })
      const started = yield* Deferred.make<void>()
      const finalized = yield* Deferred.make<void>()
      const StuckLive = Stuck.toLayer(() =>
        Effect.andThen(Deferred.succeed(started, undefined), Effect.never).pipe(
          Effect.ensuring(Deferred.succeed(finalized, undefined))
        )
      )
      const id = yield* conductor.invoke(Stuck, {})
      const error = yield* withWorker(StuckLive, { heartbeatInterval: "100 millis" }, Effect.gen(function*() {
        yield* Deferred.await(started)
        // What cancel() writes, without the notification.
        yield* sql`UPDATE conductor.executions SET cancel_reason = 'quietly' WHERE id = ${id}`
        yield* Deferred.await(finalized)
        return yield* Effect.flip(conductor.result(Stuck, id))
      }))
      assert.strictEqual(error._tag, "ExecutionCancelled")
      assert.match(error.message, /quietly/)
    }))

  it.effect("a parent whose cancel was requested but not yet signalled starts no child, and ends cancelled", () =>
    Effect.gen(function*() {
      const conductor = yield* Conductor
      const sql = yield* SqlClient.SqlClient
      const Child = Task.make("late-child", { payload: Schema.Struct({}) })
      const Parent = Task.make("late-parent", { payload: Schema.Struct({}) })
      const started = yield* Deferred.make<void>()
      const go = yield* Deferred.make<void>()
      let childRuns = 0
      const Handlers = Layer.mergeAll(
        Parent.toLayer(() =>
          Effect.gen(function*() {
            yield* Deferred.succeed(started, undefined)
            yield* Deferred.await(go)
            yield* Effect.orDie(Durable.invoke("child", Child, {}))
          })
        ),
        Child.toLayer(() => Effect.sync(() => void childRuns++))
      )
      const id = yield* conductor.invoke(Parent, {})
      // No heartbeat within the test: only the child start can notice the cancel.
      const error = yield* withWorker(Handlers, { heartbeatInterval: "1 hour", leaseDuration: "2 hours" }, Effect.gen(function*() {
        yield* Deferred.await(started)
        // What cancel() writes, without the notification.
        yield* sql`UPDATE conductor.executions SET cancel_reason = 'quietly' WHERE id = ${id}`
        yield* Deferred.succeed(go, undefined)
        return yield* Effect.flip(conductor.result(Parent, id))
      })).pipe(Effect.timeout("20 seconds"))
      assert.strictEqual(error._tag, "ExecutionCancelled")
      assert.match(error.message, /quietly/)
      assert.strictEqual(childRuns, 0)
      assert.deepStrictEqual((yield* conductor.get(id)).children, [])
    }))

  it.effect("an execution whose cancel was requested but not yet signalled records no further step, and ends cancelled", () =>
    Effect.gen(function*() {
      const conductor = yield* Conductor
      const sql = yield* SqlClient.SqlClient
      const Steps = Task.make("late-steps", { payload: Schema.Struct({}) })
      const started = yield* Deferred.make<void>()
      const go = yield* Deferred.make<void>()
      const ran: Array<string> = []
      const StepsLive = Steps.toLayer(() =>
        Effect.gen(function*() {
          yield* Durable.step("before", Effect.sync(() => void ran.push("before")))
          yield* Deferred.succeed(started, undefined)
          yield* Deferred.await(go)
          yield* Durable.step("during", Effect.sync(() => void ran.push("during")))
          yield* Durable.step("after", Effect.sync(() => void ran.push("after")))
        })
      )
      const id = yield* conductor.invoke(Steps, {})
      // No heartbeat within the test: only the step write can notice the cancel.
      const error = yield* withWorker(StepsLive, { heartbeatInterval: "1 hour", leaseDuration: "2 hours" }, Effect.gen(function*() {
        yield* Deferred.await(started)
        // What cancel() writes, without the notification.
        yield* sql`UPDATE conductor.executions SET cancel_reason = 'quietly' WHERE id = ${id}`
        yield* Deferred.succeed(go, undefined)
        return yield* Effect.flip(conductor.result(Steps, id))
      })).pipe(Effect.timeout("20 seconds"))
      assert.strictEqual(error._tag, "ExecutionCancelled")
      assert.match(error.message, /quietly/)
      // The step that was running when the cancel landed ran, but was not recorded; none ran after it.
      assert.deepStrictEqual(ran, ["before", "during"])
      const recorded = yield* sql<{ name: string }>`SELECT name FROM conductor.steps WHERE execution_id = ${id} ORDER BY name`
      assert.deepStrictEqual(recorded.map((r) => r.name), ["before"])
    }))

  it.effect("a parent waiting on a child that was cancelled gets a typed error it can catch", () =>
    Effect.gen(function*() {
      const conductor = yield* Conductor
      const Child = Task.make("stuck-child", { payload: Schema.Struct({}), success: Schema.Number })
      const Parent = Task.make("catching-parent", { payload: Schema.Struct({}), success: Schema.String })
      const childStarted = yield* Deferred.make<string>()
      const ChildLive = Child.toLayer(() =>
        Effect.andThen(
          Effect.flatMap(Durable.execution, (e) => Deferred.succeed(childStarted, e.id)),
          Effect.never
        )
      )
      const ParentLive = Parent.toLayer(() =>
        Durable.invoke("child", Child, {}).pipe(
          Effect.map(() => "finished"),
          Effect.catchTag("ExecutionCancelled", (e) => Effect.succeed(`child cancelled: ${e.reason}`)),
          Effect.orDie
        )
      )
      const id = yield* conductor.invoke(Parent, {})
      const result = yield* withWorker(Layer.mergeAll(ChildLive, ParentLive), {}, Effect.gen(function*() {
        const child = yield* Deferred.await(childStarted)
        yield* conductor.cancel(child, { reason: "stop" })
        return yield* conductor.result(Parent, id)
      }))
      assert.strictEqual(result, "child cancelled: stop")
    }))

  it.effect("a handler may cancel itself", () =>
    Effect.gen(function*() {
      const conductor = yield* Conductor
      const Quitter = Task.make("quitter", { payload: Schema.Struct({}), success: Schema.String })
      const QuitterLive = Quitter.toLayer(() =>
        Effect.gen(function*() {
          const self = yield* Durable.execution
          yield* conductor.cancel(self.id, { reason: "changed my mind" }).pipe(Effect.orDie)
          return yield* Effect.never
        })
      )
      const id = yield* conductor.invoke(Quitter, {})
      const error = yield* withWorker(QuitterLive, {}, Effect.flip(conductor.result(Quitter, id)))
      assert.strictEqual(error._tag, "ExecutionCancelled")
      assert.match(error.message, /changed my mind/)
    }))
})
