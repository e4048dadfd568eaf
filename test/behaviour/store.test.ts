/**
 * Store rules that both backends must keep, checked against the store itself.
 */
import { assert, layer } from "@effect/vitest"
import { Effect } from "effect"
import { type StepRecord, Store } from "../../src/internal/Store.ts"
import { backends, unique } from "../support/backends.ts"

const worker = "00000000-0000-4000-8000-0000000000aa"

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
  })
}
