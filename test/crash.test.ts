/**
 * Real processes, real SIGKILL: a worker dies mid-execution, its lease
 * expires, and a worker in this process resumes the work from the last
 * committed step.
 */
import { assert, layer } from "@effect/vitest"
import { Effect, Layer, Schedule } from "effect"
import { SqlClient } from "effect/sql"
import { Conductor } from "../src/Conductor.ts"
import { spawnWorker } from "./support/child.ts"
import { pgStack, withWorker } from "./support/stack.ts"
import { TestDatabase } from "./support/TestDatabase.ts"
import {
  createLog,
  FanOut,
  FanOutLive,
  Hang,
  HangLive,
  MultiStep,
  MultiStepLive,
  Napper,
  NapperLive,
  Square,
  SquareLive
} from "./fixtures/crash-tasks.ts"

const events = (id: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* sql<{ event: string }>`SELECT event FROM crash_log WHERE execution_id = ${id} ORDER BY at`
    return rows.map((row) => row.event)
  })

const worker = { concurrency: 4, leaseDuration: "1 second", heartbeatInterval: "200 millis", pollInterval: "200 millis" } as const

layer(pgStack(), { excludeTestServices: true })("SIGKILL recovery", (it) => {
  it.effect("what an invoke hands to an idle worker just killed runs elsewhere once that worker's lease expires", () =>
    Effect.gen(function*() {
      yield* createLog
      const conductor = yield* Conductor
      const sql = yield* SqlClient.SqlClient
      const { url } = yield* TestDatabase
      // A longer lease: the invoke below must come while the dead worker's lease lasts.
      const child = yield* spawnWorker(url, { LEASE_MS: "3000" })
      yield* child.waitFor("worker ready")
      // Its claims say nothing to this process: watch its row for the offer.
      const offering = sql<{ id: string }>`SELECT id FROM conductor.workers WHERE offered > 0`
      const [dead] = yield* offering.pipe(
        Effect.repeat({ until: (rows) => rows.length > 0, schedule: Schedule.spaced("20 millis") }),
        Effect.timeout("10 seconds")
      )
      yield* child.kill("SIGKILL")
      assert.strictEqual(yield* child.exited, "SIGKILL")
      // A statement it had in flight (a heartbeat, say) may still hold its
      // row, and an invoke passes a locked worker by: wait for its backends to
      // notice the kill and end their transactions.
      const writingWorkers = sql<{ n: number }>`
        SELECT count(*)::int AS n FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
        WHERE c.relname = 'workers' AND l.mode = 'RowExclusiveLock'`
      yield* writingWorkers.pipe(
        Effect.repeat({ until: ([row]) => row!.n === 0, schedule: Schedule.spaced("10 millis") }),
        Effect.timeout("10 seconds")
      )

      const id = yield* conductor.invoke(Square, { n: 9 })
      const [row] = yield* sql<{ status: string; lease_owner: string }>`
        SELECT status, lease_owner FROM conductor.executions WHERE id = ${id}`
      assert.deepStrictEqual(row, { status: "running", lease_owner: dead!.id }, "handed to the dead worker")

      const result = yield* withWorker(SquareLive, worker, conductor.result(Square, id))
      assert.strictEqual(result, 81)
      // The attempt it was handed with stays counted, as a claimed one's would.
      assert.strictEqual((yield* conductor.get(id)).attempts, 2)
      assert.deepStrictEqual(yield* events(id), ["square 9"])
    }).pipe(Effect.scoped), { timeout: 30_000 })

  it.effect("a killed worker's execution is resumed by another after its lease expires", () =>
    Effect.gen(function*() {
      yield* createLog
      const conductor = yield* Conductor
      const { url } = yield* TestDatabase
      const child = yield* spawnWorker(url, { CRASH_AT: "hang" })
      yield* child.waitFor("worker ready")
      const id = yield* conductor.invoke(Hang, { n: 7 })
      yield* child.waitFor("reached hang")
      yield* child.kill("SIGKILL")
      assert.strictEqual(yield* child.exited, "SIGKILL")

      const result = yield* withWorker(HangLive, worker, conductor.result(Hang, id))
      assert.strictEqual(result, 7)
      const info = yield* conductor.get(id)
      assert.strictEqual(info.status, "completed")
      // The killed attempt stays counted: lost leases use up attempts.
      assert.strictEqual(info.attempts, 2)
      assert.deepStrictEqual(yield* events(id), ["started", "started"])
    }).pipe(Effect.scoped), { timeout: 30_000 })

  it.effect("work that keeps killing its workers ends after maxAttempts", () =>
    Effect.gen(function*() {
      yield* createLog
      const conductor = yield* Conductor
      const { url } = yield* TestDatabase
      const id = yield* conductor.invoke(Hang, { n: 1 })
      for (let i = 0; i < 3; i++) {
        yield* Effect.scoped(Effect.gen(function*() {
          const child = yield* spawnWorker(url, { CRASH_AT: "hang" })
          yield* child.waitFor("reached hang")
          yield* child.kill("SIGKILL")
          yield* child.exited
        }))
      }
      const outcome = yield* withWorker(HangLive, worker, Effect.flip(conductor.result(Hang, id)))
      assert.strictEqual(outcome._tag, "ExecutionFailed")
      assert.match(outcome.message, /lease expired on the last attempt \(3 of 3\)/)
      assert.deepStrictEqual(yield* events(id), ["started", "started", "started"])
    }).pipe(Effect.scoped), { timeout: 30_000 })

  it.effect("steps committed before the kill are not re-run; the result is the same", () =>
    Effect.gen(function*() {
      yield* createLog
      const conductor = yield* Conductor
      const { url } = yield* TestDatabase
      const child = yield* spawnWorker(url, { CRASH_AT: "s2" })
      yield* child.waitFor("worker ready")
      const id = yield* conductor.invoke(MultiStep, { start: 4 })
      yield* child.waitFor("reached s2")
      yield* child.kill("SIGKILL")
      yield* child.exited

      const result = yield* withWorker(MultiStepLive, worker, conductor.result(MultiStep, id))
      // ((4 + 1) * 2 + 3) * 10, as without the kill
      assert.strictEqual(result, 130)
      assert.deepStrictEqual(yield* events(id), ["s1", "s2", "s3", "s4"])
      const info = yield* conductor.get(id)
      assert.deepStrictEqual(info.steps.map((s) => [s.name, s.attempt]), [["s1", 1], ["s2", 1], ["s3", 2], ["s4", 2]])
    }).pipe(Effect.scoped), { timeout: 30_000 })

  it.effect("concurrent child invokes replay after a crash: same children, same result", () =>
    Effect.gen(function*() {
      yield* createLog
      const conductor = yield* Conductor
      const { url } = yield* TestDatabase
      const child = yield* spawnWorker(url, { CRASH_AT: "square 3" })
      yield* child.waitFor("worker ready")
      const id = yield* conductor.invoke(FanOut, { ns: [1, 2, 3] })
      yield* child.waitFor("reached square 3")
      yield* child.kill("SIGKILL")
      yield* child.exited

      const result = yield* withWorker(Layer.mergeAll(FanOutLive, SquareLive), worker, conductor.result(FanOut, id))
      assert.strictEqual(result, 1 + 4 + 9)
      const info = yield* conductor.get(id)
      assert.strictEqual(info.children.length, 3)
      assert.deepStrictEqual(info.children.map((c) => c.status), ["completed", "completed", "completed"])
      assert.deepStrictEqual(info.steps.map((s) => s.name).sort(), ["square-1", "square-2", "square-3"])
    }).pipe(Effect.scoped), { timeout: 30_000 })

  it.effect("a durable sleep outlives a full worker restart and is not restarted", () =>
    Effect.gen(function*() {
      yield* createLog
      const conductor = yield* Conductor
      const { url } = yield* TestDatabase
      const child = yield* spawnWorker(url)
      yield* child.waitFor("worker ready")
      const id = yield* conductor.invoke(Napper, { ms: 1500 })
      yield* child.waitFor("reached before-sleep")
      yield* child.kill("SIGTERM")
      assert.strictEqual(yield* child.exited, "0")

      const result = yield* withWorker(NapperLive, worker, conductor.result(Napper, id))
      assert.strictEqual(result, 1500)
      const info = yield* conductor.get(id)
      const nap = info.steps.find((s) => s.name === "nap")!
      const before = info.steps.find((s) => s.name === "before")!
      const after = info.steps.find((s) => s.name === "after")!
      // One sleep record, written in the first attempt; the resumed run waited for it, not for a new one.
      assert.strictEqual(nap.attempt, 1)
      assert.isAtLeast(after.recordedAt.getTime(), Number(nap.value))
      assert.isBelow(Number(nap.value) - before.recordedAt.getTime(), 1500 + 500)
      assert.deepStrictEqual(yield* events(id), ["before", "after"])
    }).pipe(Effect.scoped), { timeout: 30_000 })
})
