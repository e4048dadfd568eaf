/**
 * Store rules that both backends must keep, checked against the store itself.
 */
import { assert, layer } from "@effect/vitest"
import { Effect } from "effect"
import { SqlClient } from "effect/sql"
import { TestClock } from "effect/testing"
import { type StepRecord, Store } from "../../src/internal/Store.ts"
import { type Backend, backends, unique } from "../support/backends.ts"

/**
 * Makes finished executions `millis` older as the retention sweep sees them:
 * the TestClock moves on memory; on Postgres (whose clock is its own) their
 * expiry moves back instead.
 */
const age = (backend: Backend, millis: number) =>
  backend.name === "memory"
    ? TestClock.adjust(millis)
    : Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      yield* sql.unsafe(`UPDATE conductor.finished_executions SET expires_at = expires_at - $1 * interval '1 millisecond'`, [millis])
    })

const worker = "00000000-0000-4000-8000-0000000000aa"

/**
 * Lets the lease of worker `id` (taken for at most `leaseMillis`) run out: the
 * TestClock moves past it on memory; on Postgres the worker's row expires.
 */
const expireWorker = (backend: Backend, id: string, leaseMillis: number) =>
  backend.name === "memory"
    ? TestClock.adjust(leaseMillis + 1)
    : Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      yield* sql`UPDATE conductor.workers SET expires_at = now() - interval '1 millisecond' WHERE id = ${id}`
    })

for (const backend of backends) {
  layer(backend.layer, { excludeTestServices: backend.excludeTestServices })(backend.name, (it) => {
    it.effect("a cancel requested while an execution runs wins over its suspension, release or retry", () =>
      Effect.gen(function*() {
        const store = yield* Store
        const queue = unique("q")
        const ids = [crypto.randomUUID(), crypto.randomUUID(), crypto.randomUUID()]
        yield* store.insert(ids.map((id) => ({ id, task: "t", queue, payload: {}, priority: 0, maxAttempts: 3 })))
        const claimed = yield* store.claim({ queue, tasks: ["t"], limit: 3, workerId: worker, leaseMillis: 60_000 })
        assert.strictEqual(claimed.length, 3)
        for (const id of ids) assert.strictEqual(yield* store.cancel(id, "stop it"), "requested")
        yield* store.finish(worker, [
          { _tag: "Suspended", id: ids[0]!, until: undefined },
          { _tag: "Released", id: ids[1]! },
          { _tag: "Failed", id: ids[2]!, error: { _tag: "Defect", message: "boom" }, retryDelayMillis: 10 }
        ])
        for (const id of ids) {
          const row = (yield* store.get(id))!
          assert.strictEqual(row.status, "cancelled")
          assert.deepStrictEqual(row.error, { _tag: "Cancelled", reason: "stop it" })
        }
      }))

    it.effect("a claim returns its executions in claim order (higher priority first), whatever their ids", () =>
      Effect.gen(function*() {
        const store = yield* Store
        const queue = unique("q")
        // Random ids: their order says nothing of the priorities.
        const rows = Array.from({ length: 40 }, (_, i) => ({
          id: crypto.randomUUID(), task: "t", queue, payload: {}, priority: (i * 7) % 5, maxAttempts: 3
        }))
        yield* store.insert(rows)
        const claimed = yield* store.claim({ queue, tasks: ["t"], limit: 40, workerId: worker, leaseMillis: 60_000 })
        const priority = new Map<string, number>(rows.map((row) => [row.id, row.priority]))
        const priorities = claimed.map((c) => priority.get(c.id)!)
        assert.deepStrictEqual(priorities, [...priorities].sort((a, b) => b - a))
        assert.strictEqual(claimed.length, 40)
      }))

    it.effect("only an execution's first claim is fresh (no steps to read)", () =>
      Effect.gen(function*() {
        const store = yield* Store
        const queue = unique("q")
        const id = crypto.randomUUID()
        const claim = store.claim({ queue, tasks: ["t"], limit: 1, workerId: worker, leaseMillis: 60_000 })
        yield* store.insert([{ id, task: "t", queue, payload: {}, priority: 0, maxAttempts: 3 }])
        const [first] = yield* claim
        assert.strictEqual(first!.fresh, true)
        yield* store.recordSteps(worker, [{ executionId: id, record: { name: "s", kind: "step", value: 1, error: undefined, attempt: 1 } }])
        // Given back (as a shutdown does) and claimed again: its step must be read.
        yield* store.finish(worker, [{ _tag: "Released", id }])
        const [second] = yield* claim
        assert.strictEqual(second!.id, id)
        assert.strictEqual(second!.fresh, false)
      }))

    it.effect("orphans are the executions leased to a worker that it does not know of", () =>
      Effect.gen(function*() {
        const store = yield* Store
        const queue = unique("q")
        const worker = crypto.randomUUID()
        const ids = [crypto.randomUUID(), crypto.randomUUID(), crypto.randomUUID()]
        yield* store.insert(ids.map((id) => ({ id, task: "t", queue, payload: {}, priority: 0, maxAttempts: 3 })))
        const claimed = yield* store.claim({ queue, tasks: ["t"], limit: 3, workerId: worker, leaseMillis: 60_000 })
        assert.strictEqual(claimed.length, 3)
        // The worker knows only the first (the reply with the other two was lost).
        const orphans = yield* store.orphans(worker, [ids[0]!])
        assert.deepStrictEqual([...orphans].sort(), [ids[1]!, ids[2]!].sort())
        assert.deepStrictEqual(yield* store.orphans(crypto.randomUUID(), []), [])
        // Given back, they are runnable again with their attempt returned.
        yield* store.finish(worker, orphans.map((id) => ({ _tag: "Released" as const, id })))
        assert.deepStrictEqual(yield* store.orphans(worker, [ids[0]!]), [])
        for (const id of orphans) {
          const row = (yield* store.get(id))!
          assert.strictEqual(row.status, "pending")
          assert.strictEqual(row.attempts, 0)
        }
      }))

    it.effect("a worker's lease covers all it holds: kept alive by heartbeats, even idle; once expired, all of it is recovered", () =>
      Effect.gen(function*() {
        const store = yield* Store
        const queue = unique("q")
        const [a, b] = [crypto.randomUUID(), crypto.randomUUID()]
        const ids = [crypto.randomUUID(), crypto.randomUUID(), crypto.randomUUID()]
        yield* store.insert(ids.map((id) => ({ id, task: "t", queue, payload: {}, priority: 0, maxAttempts: 3 })))
        const ofA = yield* store.claim({ queue, tasks: ["t"], limit: 2, workerId: a, leaseMillis: 1_000 })
        const ofB = yield* store.claim({ queue, tasks: ["t"], limit: 1, workerId: b, leaseMillis: 60_000 })
        assert.deepStrictEqual([ofA.length, ofB.length], [2, 1])
        // Expired, then a heartbeat (holding nothing it knows of): alive again, nothing recovered.
        yield* expireWorker(backend, a, 1_000)
        assert.deepStrictEqual(yield* store.heartbeat(a, [], 1_000), { lost: [], cancelRequested: [], dispatched: 0 })
        assert.strictEqual(yield* store.recoverExpiredLeases, 0)
        // Expired for good: both of A's executions are runnable again, their attempt used; B's runs on.
        yield* expireWorker(backend, a, 1_000)
        assert.strictEqual(yield* store.recoverExpiredLeases, 2)
        for (const { id } of ofA) {
          const row = (yield* store.get(id))!
          assert.strictEqual(row.status, "pending")
          assert.strictEqual(row.attempts, 1)
          assert.match(row.error?._tag === "Defect" ? row.error.message : "", /lease expired/)
        }
        assert.strictEqual((yield* store.get(ofB[0]!.id))!.status, "running")
        // A is forgotten: nothing more to recover, and a late heartbeat learns it lost both.
        assert.strictEqual(yield* store.recoverExpiredLeases, 0)
        const late = yield* store.heartbeat(a, ofA.map((e) => e.id), 1_000)
        assert.deepStrictEqual([...late.lost].sort(), ofA.map((e) => e.id).sort())
      }))

    it.effect("abandon ends a worker's own leases as expired ones: retried while attempts remain, failed for good after", () =>
      Effect.gen(function*() {
        const store = yield* Store
        const queue = unique("q")
        const [a, b] = [crypto.randomUUID(), crypto.randomUUID()]
        const [retried, failed, kept] = [crypto.randomUUID(), crypto.randomUUID(), crypto.randomUUID()]
        yield* store.insert([
          { id: retried, task: "t", queue, payload: {}, priority: 2, maxAttempts: 3 },
          { id: failed, task: "t", queue, payload: {}, priority: 1, maxAttempts: 1 },
          { id: kept, task: "t", queue, payload: {}, priority: 0, maxAttempts: 3 }
        ])
        assert.strictEqual((yield* store.claim({ queue, tasks: ["t"], limit: 3, workerId: a, leaseMillis: 60_000 })).length, 3)
        // Another worker's word changes nothing.
        assert.strictEqual(yield* store.abandon(b, [retried, failed]), 0)
        assert.strictEqual((yield* store.get(retried))!.status, "running")
        assert.strictEqual(yield* store.abandon(a, [retried, failed]), 2)
        const again = (yield* store.get(retried))!
        assert.strictEqual(again.status, "pending")
        assert.strictEqual(again.attempts, 1)
        assert.match(again.error?._tag === "Defect" ? again.error.message : "", /attempt 1 gave its lease up/)
        const over = (yield* store.get(failed))!
        assert.strictEqual(over.status, "failed")
        assert.match(over.error?._tag === "Defect" ? over.error.message : "", /gave its lease up on the last attempt \(1 of 1\)/)
        assert.strictEqual((yield* store.get(kept))!.status, "running")
        assert.strictEqual(yield* store.abandon(a, [retried]), 0)
      }))

    it.effect("a parent suspended in the same batch in which its cancelled child ends is woken", () =>
      Effect.gen(function*() {
        const store = yield* Store
        const queue = unique("q")
        const worker = crypto.randomUUID()
        const parent = crypto.randomUUID()
        const child = crypto.randomUUID()
        yield* store.insert([{ id: parent, task: "p", queue, payload: {}, priority: 0, maxAttempts: 3 }])
        yield* store.claim({ queue, tasks: ["p"], limit: 1, workerId: worker, leaseMillis: 60_000 })
        yield* store.startChildren(worker, [{
          id: child, task: "c", queue, payload: {}, priority: 0, maxAttempts: 1, delayMillis: undefined,
          parentId: parent, parentStep: "child", attempt: 1, timeoutMillis: undefined
        }])
        yield* store.claim({ queue, tasks: ["c"], limit: 1, workerId: worker, leaseMillis: 60_000 })
        assert.strictEqual(yield* store.cancel(child, "stop"), "requested")
        // One batch: the parent suspends (waiting for its child) and the child, stopped, is released.
        yield* store.finish(worker, [{ _tag: "Suspended", id: parent, until: undefined }, { _tag: "Released", id: child }])
        assert.strictEqual((yield* store.get(child))!.status, "cancelled")
        assert.strictEqual((yield* store.get(parent))!.status, "pending")
      }))

    it.effect("an execution whose cancel was requested starts no new child and records no new step; recorded ones are still returned", () =>
      Effect.gen(function*() {
        const store = yield* Store
        const queue = unique("q")
        const worker = crypto.randomUUID()
        const parent = crypto.randomUUID()
        yield* store.insert([{ id: parent, task: "t", queue, payload: {}, priority: 0, maxAttempts: 3 }])
        yield* store.claim({ queue, tasks: ["t"], limit: 1, workerId: worker, leaseMillis: 60_000 })
        const child = (id: string, step: string) => ({
          id, task: "c", queue, payload: {}, priority: 0, maxAttempts: 1, delayMillis: undefined,
          parentId: parent, parentStep: step, attempt: 1, timeoutMillis: undefined
        })
        const before = crypto.randomUUID()
        const [first] = yield* store.startChildren(worker, [child(before, "before")])
        assert.deepStrictEqual(first, { id: before, deadline: undefined })
        assert.strictEqual(yield* store.cancel(parent, "stop"), "requested")
        const [again, late] = yield* store.startChildren(worker, [child(crypto.randomUUID(), "before"), child(crypto.randomUUID(), "late")])
        assert.deepStrictEqual(again, { id: before, deadline: undefined })
        assert.deepStrictEqual(late, { _tag: "CancelRequested", reason: "stop" })
        assert.deepStrictEqual((yield* store.children(parent)).map((c) => c.id), [before])
        // Steps likewise: a recorded one is still answered, a new one is not recorded.
        const step = (name: string) => ({ executionId: parent, record: { name, kind: "step" as const, value: 1, error: undefined, attempt: 1 } })
        const [kept, refused] = yield* store.recordSteps(worker, [step("before"), step("after")])
        assert.strictEqual((kept as StepRecord).kind, "child")
        assert.deepStrictEqual(refused, { _tag: "CancelRequested", reason: "stop" })
        assert.deepStrictEqual((yield* store.steps(parent)).map((s) => s.name), ["before"])
      }))

    it.effect("retention: the sweep deletes expired finished executions with their steps, not before a minute, not a child of an unfinished parent", () =>
      Effect.gen(function*() {
        const store = yield* Store
        const queue = unique("q")
        const [hourly, instant, forever, parentTask] = [unique("hourly"), unique("instant"), unique("forever"), unique("parent")]
        yield* store.setRetention([
          { task: hourly, completedMillis: 3_600_000, failedMillis: undefined },
          { task: instant, completedMillis: 0, failedMillis: 0 },
          { task: forever, completedMillis: undefined, failedMillis: undefined }
        ])
        const id = () => crypto.randomUUID()
        const [done, failed, kept, quick, parent, child] = [id(), id(), id(), id(), id(), id()]
        const row = (id: string, task: string, parentId?: string) => ({
          id, task, queue, payload: {}, priority: 0, maxAttempts: 1, parentId, parentStep: parentId && "child"
        })
        yield* store.insert([
          row(done, hourly), row(failed, hourly), row(kept, forever), row(quick, instant), row(parent, parentTask), row(child, hourly, parent)
        ])
        const claimed = yield* store.claim({
          queue, tasks: [hourly, instant, forever, parentTask], limit: 10, workerId: worker, leaseMillis: 60_000
        })
        assert.strictEqual(claimed.length, 6)
        yield* store.recordSteps(worker, [{ executionId: done, record: { name: "s", kind: "step", value: 1, error: undefined, attempt: 1 } }])
        yield* store.finish(worker, [
          { _tag: "Completed", id: done, result: 1 },
          { _tag: "Failed", id: failed, error: { _tag: "Defect", message: "boom" }, retryDelayMillis: undefined },
          { _tag: "Completed", id: kept, result: 2 },
          // Not marked `discard`: a task that keeps none still keeps it a minute.
          { _tag: "Completed", id: quick, result: 3 },
          { _tag: "Completed", id: child, result: 4 }
        ])
        const present = (ids: ReadonlyArray<string>) =>
          Effect.map(Effect.forEach(ids, store.get), (rows) => rows.map((row) => row !== undefined))

        yield* age(backend, 30_000)
        assert.strictEqual(yield* store.sweepFinished(100), 0, "nothing is deleted within a minute of finishing")

        yield* age(backend, 60_000)
        assert.strictEqual(yield* store.sweepFinished(100), 1, "the retention-0 execution, after its minute")
        assert.deepStrictEqual(yield* present([quick, done, failed, kept, child]), [false, true, true, true, true])

        yield* age(backend, 3_600_000)
        assert.strictEqual(yield* store.sweepFinished(100), 1, "the completed hourly execution; the child waits for its parent")
        assert.deepStrictEqual(yield* present([done, failed, kept, child]), [false, true, true, true])
        assert.deepStrictEqual(yield* store.steps(done), [], "its step records go with it")

        yield* store.finish(worker, [{ _tag: "Completed", id: parent, result: null }])
        assert.strictEqual(yield* store.sweepFinished(100), 1, "the child, once its parent finished")
        assert.deepStrictEqual(yield* present([child, failed, kept, parent]), [false, true, true, true])
        assert.strictEqual(yield* store.sweepFinished(100), 0)
      }))

    it.effect("retention: a completed execution marked discard is deleted unless awaited, a child, or asked to cancel", () =>
      Effect.gen(function*() {
        const store = yield* Store
        const queue = unique("q")
        const task = unique("keepless")
        yield* store.setRetention([{ task, completedMillis: 0, failedMillis: undefined }])
        const id = () => crypto.randomUUID()
        const [plain, awaited, cancelled, parent, child] = [id(), id(), id(), id(), id()]
        const row = (id: string, parentId?: string) => ({
          id, task, queue, payload: {}, priority: 0, maxAttempts: 1, parentId, parentStep: parentId && "child"
        })
        yield* store.insert([row(plain), row(awaited), row(cancelled), row(parent), row(child, parent)])
        assert.strictEqual((yield* store.claim({ queue, tasks: [task], limit: 10, workerId: worker, leaseMillis: 60_000 })).length, 5)
        yield* store.recordSteps(worker, [{ executionId: plain, record: { name: "s", kind: "step", value: 1, error: undefined, attempt: 1 } }])
        yield* store.awaitOutcomes([awaited])
        assert.strictEqual(yield* store.cancel(cancelled, "stop"), "requested")
        const discard = { steps: true }
        yield* store.finish(worker, [plain, awaited, cancelled, child].map((id) => ({ _tag: "Completed", id, result: 1, discard })))
        assert.strictEqual(yield* store.get(plain), undefined)
        assert.deepStrictEqual(yield* store.steps(plain), [])
        assert.strictEqual((yield* store.get(awaited))?.status, "completed")
        assert.strictEqual((yield* store.get(cancelled))?.status, "cancelled")
        assert.strictEqual((yield* store.get(child))?.status, "completed")
        // Fenced by the lease like any finish: another worker's discard deletes nothing.
        yield* store.finish(crypto.randomUUID(), [{ _tag: "Completed", id: parent, result: 1, discard }])
        assert.strictEqual((yield* store.get(parent))?.status, "running")
      }))
  })
}
