/**
 * The database drops every connection (as in a restart) while executions
 * are running, sleeping and waiting on children: workers reconnect and
 * everything completes.
 */
import { assert, it as plain, layer } from "@effect/vitest"
import { PgClient } from "@effect/sql-pg"
import { Deferred, Effect, Layer, Redacted, Schema } from "effect"
import { startPostgres } from "../dev/postgres.ts"
import * as PgStore from "../src/PgStore.ts"
import { SqlClient } from "effect/sql"
import { Conductor } from "../src/Conductor.ts"
import { Store } from "../src/internal/Store.ts"
import * as Durable from "../src/Durable.ts"
import * as Task from "../src/Task.ts"
import { pgStack, withWorker } from "./support/stack.ts"
import { serverUrl, TestDatabase } from "./support/TestDatabase.ts"

const Sleeper = Task.make("sleeper", { payload: Schema.Struct({}), success: Schema.String })
const Runner = Task.make("runner", { payload: Schema.Struct({}), success: Schema.String })
const Child = Task.make("child", { payload: Schema.Struct({}), success: Schema.String })
const Parent = Task.make("parent", { payload: Schema.Struct({}), success: Schema.String })

layer(pgStack(), { excludeTestServices: true })("connections dropped", (it) => {
  it.effect("running, sleeping and waiting executions all complete", () =>
    Effect.gen(function*() {
      const conductor = yield* Conductor
      const sql = yield* SqlClient.SqlClient
      const running = yield* Deferred.make<void>()
      const release = yield* Deferred.make<void>()
      const childRunning = yield* Deferred.make<void>()
      const Handlers = Layer.mergeAll(
        Sleeper.toLayer(() => Effect.as(Durable.sleep("nap", "500 millis"), "slept")),
        Runner.toLayer(() =>
          Effect.gen(function*() {
            yield* Deferred.succeed(running, undefined)
            yield* Deferred.await(release)
            return yield* Durable.step("after", Effect.succeed("ran"))
          })
        ),
        Child.toLayer(() =>
          Effect.andThen(Deferred.succeed(childRunning, undefined), Effect.as(Deferred.await(release), "child"))
        ),
        Parent.toLayer(() => Effect.orDie(Durable.invoke("child", Child, {})))
      )
      const results = yield* withWorker(
        Handlers,
        { inlineSleep: 0, leaseDuration: "2 seconds", heartbeatInterval: "200 millis", pollInterval: "500 millis" },
        Effect.gen(function*() {
          const sleeper = yield* conductor.invoke(Sleeper, {})
          const runner = yield* conductor.invoke(Runner, {})
          const parent = yield* conductor.invoke(Parent, {})
          yield* Deferred.await(running)
          yield* Deferred.await(childRunning)
          const dropped = yield* sql<{ pid: number }>`
            SELECT pid FROM pg_stat_activity
            WHERE datname = current_database() AND pid <> pg_backend_pid()`
          yield* sql`
            SELECT pg_terminate_backend(pid) FROM pg_stat_activity
            WHERE datname = current_database() AND pid <> pg_backend_pid()`
          assert.isAbove(dropped.length, 1)
          // Our own connection goes too.
          yield* sql`SELECT pg_terminate_backend(pg_backend_pid())`.pipe(Effect.ignore)
          yield* Deferred.succeed(release, undefined)
          return yield* Effect.all([
            conductor.result(Sleeper, sleeper),
            conductor.result(Runner, runner),
            conductor.result(Parent, parent)
          ])
        })
      )
      assert.deepStrictEqual(results, ["slept", "ran", "child"])
    }), { timeout: 30_000 })
})

plain.live("a real server restart: workers reconnect, nothing is lost, everything completes", () =>
  Effect.gen(function*() {
    // Its own embedded server (whatever DATABASE_URL says), so it can be restarted.
    const server = yield* Effect.acquireRelease(
      Effect.promise(() => startPostgres({ env: {} })),
      (s) => Effect.promise(() => s.stop())
    )
    const Stack = Conductor.layer.pipe(
      Layer.provideMerge(PgStore.layer()),
      Layer.provideMerge(PgClient.layer({ url: Redacted.make(server.url) }))
    )
    yield* Effect.gen(function*() {
      const conductor = yield* Conductor
      const running = yield* Deferred.make<void>()
      const release = yield* Deferred.make<void>()
      const Handlers = Layer.mergeAll(
        Sleeper.toLayer(() => Effect.as(Durable.sleep("nap", "1500 millis"), "slept")),
        Runner.toLayer(() =>
          Effect.gen(function*() {
            yield* Deferred.succeed(running, undefined)
            yield* Deferred.await(release)
            return yield* Durable.step("after", Effect.succeed("ran"))
          })
        ),
        Child.toLayer(() => Effect.as(Durable.sleep("wait", "1 second"), "child")),
        Parent.toLayer(() => Effect.orDie(Durable.invoke("child", Child, {})))
      )
      const results = yield* withWorker(
        Handlers,
        { inlineSleep: 0, leaseDuration: "3 seconds", heartbeatInterval: "200 millis", pollInterval: "500 millis" },
        Effect.gen(function*() {
          const ids = [
            yield* conductor.invoke(Sleeper, {}),
            yield* conductor.invoke(Runner, {}),
            yield* conductor.invoke(Parent, {})
          ] as const
          yield* Deferred.await(running)
          yield* Effect.promise(() => server.restart!())
          yield* Deferred.succeed(release, undefined)
          return yield* Effect.all([
            conductor.result(Sleeper, ids[0]),
            conductor.result(Runner, ids[1]),
            conductor.result(Parent, ids[2])
          ])
        })
      )
      assert.deepStrictEqual(results, ["slept", "ran", "child"])
    }).pipe(Effect.provide(Stack))
  }).pipe(Effect.scoped), 60_000)

layer(pgStack(), { excludeTestServices: true })("database unreachable", (it) => {
  it.effect("a worker that cannot renew its lease for a lease duration interrupts its handlers, and gives them back once it can", () =>
    Effect.gen(function*() {
      const conductor = yield* Conductor
      const { name } = yield* TestDatabase
      const started = yield* Deferred.make<void>()
      const interrupted = yield* Deferred.make<void>()
      const Stubborn = Task.make("stubborn", { payload: Schema.Struct({}), success: Schema.Number })
      let calls = 0
      // The first attempt runs until interrupted; the next one completes.
      const StubbornLive = Stubborn.toLayer(() =>
        ++calls > 1 ? Effect.succeed(calls) : Effect.andThen(Deferred.succeed(started, undefined), Effect.never).pipe(
          Effect.onInterrupt(() => Deferred.succeed(interrupted, undefined))
        )
      )
      const id = yield* conductor.invoke(Stubborn, {})
      const admin = PgClient.layer({ url: Redacted.make(serverUrl()), maxConnections: 1 })
      const setConnections = (allow: boolean) =>
        Effect.gen(function*() {
          const sql = yield* SqlClient.SqlClient
          yield* sql.unsafe(`ALTER DATABASE "${name}" WITH ALLOW_CONNECTIONS ${allow}`)
          if (!allow) {
            yield* sql`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = ${name}`
          }
        }).pipe(Effect.provide(admin))
      // When the last heartbeat that renewed the lease was sent (the lease
      // runs from then), read from the worker's own store.
      let renewedAt = 0
      const renewals = Layer.effect(
        Store,
        Effect.map(Effect.service(Store), (store) =>
          Store.of({
            ...store,
            heartbeat: (workerId, ids, leaseMillis) =>
              Effect.suspend(() => {
                const sent = Date.now()
                return Effect.tap(store.heartbeat(workerId, ids, leaseMillis), () => Effect.sync(() => (renewedAt = sent)))
              })
          }))
      )
      const waited = yield* withWorker(
        StubbornLive,
        { leaseDuration: "1 second", heartbeatInterval: "100 millis", shutdownGrace: 0 },
        Effect.gen(function*() {
          yield* Deferred.await(started)
          yield* setConnections(false)
          yield* Deferred.await(interrupted)
          const waited = Date.now() - renewedAt
          yield* setConnections(true)
          // The interrupted attempt was given up: its lease ends (as an expired
          // one, the attempt used) and the same worker runs the next attempt.
          assert.strictEqual(yield* conductor.result(Stubborn, id), 2)
          return waited
        })
      ).pipe(Effect.provide(renewals), Effect.ensuring(Effect.orDie(setConnections(true))))
      // Not while its lease was safe (the last renewal lasts 1 s, and the worker
      // stops one heartbeat before that), and well before another worker could take over.
      assert.isAtLeast(waited, 850)
      assert.isBelow(waited, 1500)
      const done = yield* conductor.get(id)
      assert.strictEqual(done.attempts, 2)
    }), { timeout: 30_000 })
})
