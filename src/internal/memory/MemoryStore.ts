/**
 * The in-memory store: the same semantics as the Postgres store
 * (src/internal/pg), kept in Maps. Every method runs synchronously, so each
 * is atomic the way one SQL statement is. Time comes from Effect's `Clock`
 * captured when the store is made (a `TestClock` in tests), signals go
 * through an in-process `PubSub` and are never lost.
 *
 * Values are copied through JSON on the way in and out, as Postgres `jsonb`
 * does, so a handler never sees an object it did not get from its codec.
 */
import { Clock, Effect, PubSub } from "effect"
import type { Scope } from "effect"
import type {
  ActiveStatus,
  AttemptOutcome,
  CancelRequested,
  CancelResult,
  ChildRecord,
  ErrorRecord,
  ExecutionRow,
  FinalStatus,
  Json,
  NewExecution,
  Outcome,
  RetentionPolicy,
  Signal,
  StepRecord,
  StoreService
} from "../Store.ts"
import { minimumRetentionMillis } from "../Store.ts"

/** One execution, active or finished (the two Postgres tables in one shape). */
interface Row {
  readonly id: string
  readonly task: string
  readonly queue: string
  status: ActiveStatus | FinalStatus
  readonly priority: number
  readonly payload: Json
  attempts: number
  readonly maxAttempts: number
  /** Infinity: suspended until woken. */
  runAt: number
  /**
   * Tie-break of the claim order after run_at. Postgres' `now()` moves between
   * statements; a frozen TestClock does not, so every write that sets run_at
   * takes the next number (first enqueued, first claimed).
   */
  order: number
  /** Creation order (ties of created_at). */
  readonly seq: number
  leaseOwner: string | undefined
  wake: boolean
  cancelReason: string | undefined
  readonly dedupeKey: string | undefined
  readonly parentId: string | undefined
  readonly parentStep: string | undefined
  lastError: ErrorRecord | undefined
  result: Json | undefined
  readonly createdAt: number
  startedAt: number | undefined
  finishedAt: number | undefined
  /** A result waiter marked it (see awaitOutcomes). */
  awaited: boolean
  /** Finished: when the retention sweep may delete it; undefined: never. */
  expiresAt: number | undefined
}

/** What the test layer reads besides the store interface. */
export interface MemoryInspector {
  /** Bumped by every write and signal; unchanged means nothing happened. */
  readonly version: () => number
  /** Every execution, active and finished, in creation order. */
  readonly executions: () => ReadonlyArray<ExecutionRow>
  /** The earliest future run_at of a scheduled or waiting execution. */
  readonly nextDue: () => number | undefined
  /** The store's clock. */
  readonly now: () => number
}

const clone = <A>(value: A): A => (value === undefined ? value : JSON.parse(JSON.stringify(value)))
/** Postgres hands SQL NULL back as undefined through `orUndefined`; JSON null too. */
const orUndefined = <A>(value: A | null | undefined): A | undefined => (value === null ? undefined : value)

const isActive = (row: Row) =>
  row.status === "pending" || row.status === "scheduled" || row.status === "running" || row.status === "waiting"

/** Builds the store and its inspector. The PubSub lives as long as the scope. */
export const makeWithInspector: Effect.Effect<
  { readonly store: StoreService; readonly inspector: MemoryInspector },
  never,
  Scope.Scope
> = Effect.gen(function*() {
  const clock = yield* Clock.clockWith(Effect.succeed)
  const hub = yield* Effect.acquireRelease(PubSub.unbounded<Signal>(), PubSub.shutdown)
  const now = () => clock.currentTimeMillisUnsafe()

  /** Active executions (the hot table). */
  const active = new Map<string, Row>()
  /** Finished executions. */
  const finished = new Map<string, Row>()
  const steps = new Map<string, Map<string, StepRecord>>()
  /** Retention by task (the `retention` table). */
  const retention = new Map<string, RetentionPolicy>()
  /** When each worker's lease expires (the `workers` table). */
  const workers = new Map<string, number>()
  let version = 0
  let order = 0

  const publish = (signal: Signal) => {
    version++
    PubSub.publishUnsafe(hub, signal)
  }
  const signalQueues = (queues: Iterable<string>) => {
    for (const queue of new Set(queues)) publish({ _tag: "Work", queue })
  }
  /** A write: runs `f` atomically, bumping the version (some writes that change nothing undo that). */
  const write = <A>(f: (t: number) => A): Effect.Effect<A> =>
    Effect.sync(() => {
      version++
      return f(now())
    })
  const unchanged = () => {
    version--
  }
  const read = <A>(f: (t: number) => A): Effect.Effect<A> => Effect.sync(() => f(now()))

  const setRunAt = (row: Row, at: number) => {
    row.runAt = at
    row.order = ++order
  }

  const toExecution = (row: Row): ExecutionRow => {
    const done = !isActive(row)
    return {
      id: row.id,
      task: row.task,
      queue: row.queue,
      status: row.status,
      priority: row.priority,
      payload: clone(row.payload),
      attempts: row.attempts,
      maxAttempts: row.maxAttempts,
      runAt: done || !Number.isFinite(row.runAt) ? undefined : row.runAt,
      dedupeKey: row.dedupeKey,
      parentId: row.parentId,
      parentStep: row.parentStep,
      result: done ? orUndefined(clone(row.result)) : undefined,
      error: orUndefined(clone(row.lastError)),
      cancelReason: done ? undefined : row.cancelReason,
      createdAt: row.createdAt,
      startedAt: row.startedAt,
      finishedAt: row.finishedAt
    }
  }

  /** Moves a row to the finished set (what the `moved` CTEs do). */
  const moveToFinished = (row: Row, status: FinalStatus, result: Json | undefined, error: ErrorRecord | undefined, t: number) => {
    active.delete(row.id)
    row.status = status
    row.result = result
    row.lastError = error
    row.leaseOwner = undefined
    row.finishedAt = t
    const policy = retention.get(row.task)
    const keep = status === "completed" ? policy?.completedMillis : policy?.failedMillis
    row.expiresAt = keep === undefined ? undefined : t + Math.max(keep, minimumRetentionMillis)
    finished.set(row.id, row)
  }

  /**
   * Wakes the parents of finished executions (the `woken` CTE): `wake = true`,
   * and a waiting parent becomes pending. Returns the queues of parents now pending.
   */
  const wakeParents = (parentIds: Iterable<string | undefined>, t: number, exclude?: ReadonlySet<string>) => {
    const queues: Array<string> = []
    for (const parentId of new Set(parentIds)) {
      if (parentId === undefined || exclude?.has(parentId)) continue
      const parent = active.get(parentId)
      if (parent === undefined) continue
      parent.wake = true
      if (parent.status === "waiting") {
        parent.status = "pending"
        setRunAt(parent, t)
      }
      if (parent.status === "pending") queues.push(parent.queue)
    }
    return queues
  }

  const owned = (workerId: string, id: string) => {
    const row = active.get(id)
    return row !== undefined && row.status === "running" && row.leaseOwner === workerId ? row : undefined
  }

  const stepsOf = (executionId: string) => {
    let map = steps.get(executionId)
    if (map === undefined) {
      map = new Map()
      steps.set(executionId, map)
    }
    return map
  }

  /** A fresh unfinished row: scheduled when its run time is in the future, pending otherwise. */
  const newRow = (e: NewExecution, runAt: number, t: number): Row => ({
    id: e.id,
    task: e.task,
    queue: e.queue,
    status: runAt > t ? "scheduled" : "pending",
    priority: e.priority,
    payload: clone(e.payload ?? null),
    attempts: 0,
    maxAttempts: e.maxAttempts,
    runAt,
    order: ++order,
    seq: order,
    leaseOwner: undefined,
    wake: false,
    cancelReason: undefined,
    dedupeKey: e.dedupeKey,
    parentId: e.parentId,
    parentStep: e.parentStep,
    lastError: undefined,
    result: undefined,
    createdAt: t,
    startedAt: undefined,
    finishedAt: undefined,
    awaited: false,
    expiresAt: undefined
  })

  const insert: StoreService["insert"] = (executions) =>
    write((t) => {
      const queues: Array<string> = []
      let scheduled = false
      const results = executions.map((e) => {
        if (e.dedupeKey !== undefined) {
          for (const row of active.values()) {
            if (row.task === e.task && row.dedupeKey === e.dedupeKey) return { id: row.id, created: false }
          }
        }
        const row = newRow(e, e.runAt ?? t + (e.delayMillis ?? 0), t)
        active.set(row.id, row)
        if (row.status === "pending") queues.push(row.queue)
        else scheduled = true
        return { id: row.id, created: true }
      })
      signalQueues(queues)
      if (scheduled) publish({ _tag: "Scheduled" })
      return results
    })

  const claim: StoreService["claim"] = (o) =>
    write((t) => {
      workers.set(o.workerId, t + o.leaseMillis)
      const tasks = new Set(o.tasks)
      const picked = [...active.values()]
        .filter((row) => row.status === "pending" && row.queue === o.queue && tasks.has(row.task))
        .sort((a, b) => b.priority - a.priority || a.runAt - b.runAt || a.order - b.order)
        .slice(0, Math.max(0, o.limit))
      if (picked.length === 0) unchanged()
      return picked.map((row) => {
        const fresh = row.startedAt === undefined
        row.status = "running"
        row.attempts++
        row.leaseOwner = o.workerId
        row.startedAt ??= t
        row.wake = false
        return {
          id: row.id,
          task: row.task,
          payload: clone(row.payload),
          attempt: row.attempts,
          maxAttempts: row.maxAttempts,
          fresh,
          parentId: row.parentId
        }
      })
    })

  const finishOne = (row: Row, outcome: AttemptOutcome, t: number): "finished" | "requeued" => {
    switch (outcome._tag) {
      case "Completed":
      case "Cancelled":
      case "Failed": {
        if (outcome._tag === "Failed" && outcome.retryDelayMillis !== undefined) {
          const runAt = t + outcome.retryDelayMillis
          row.status = runAt > t ? "scheduled" : "pending"
          setRunAt(row, runAt)
          row.lastError = clone(outcome.error) ?? row.lastError
          break
        }
        const status: FinalStatus = outcome._tag === "Completed" ? "completed" : outcome._tag === "Failed" ? "failed" : "cancelled"
        const requested = row.cancelReason
        if (requested !== undefined || status === "cancelled") {
          // A cancel request that committed first wins over a completion or failure.
          const reason = requested ?? (outcome._tag === "Cancelled" ? outcome.reason : "cancelled")
          moveToFinished(row, "cancelled", undefined, { _tag: "Cancelled", reason }, t)
        } else if (outcome._tag === "Completed" && outcome.discard !== undefined && !row.awaited && row.parentId === undefined) {
          // A task that keeps no completed executions: nobody needs this one.
          active.delete(row.id)
          steps.delete(row.id)
        } else if (outcome._tag === "Completed") {
          moveToFinished(row, "completed", clone(outcome.result ?? null), undefined, t)
        } else {
          moveToFinished(row, "failed", undefined, clone((outcome as { error: ErrorRecord }).error), t)
        }
        return "finished"
      }
      case "Released":
        row.status = "pending"
        setRunAt(row, t)
        row.attempts--
        break
      case "Suspended": {
        const until = outcome.until ?? Infinity
        if (row.wake || until <= t) {
          row.status = "pending"
          setRunAt(row, t)
        } else {
          row.status = "waiting"
          setRunAt(row, until)
        }
        row.attempts--
        break
      }
    }
    row.wake = false
    row.leaseOwner = undefined
    return "requeued"
  }

  const finishOutcomes = (workerId: string, outcomes: ReadonlyArray<AttemptOutcome>) =>
    write((t) => {
      const queues: Array<string> = []
      const parents: Array<string | undefined> = []
      let later = false
      // Like Postgres: the final outcomes (and the wake-ups of their parents)
      // first, then the requeued ones, so a parent suspending in the same
      // batch as its child's completion finds its wake flag.
      for (const outcome of outcomes.filter((o) => !isRequeue(o))) {
        const row = owned(workerId, outcome.id)
        if (row === undefined) continue
        finishOne(row, outcome, t)
        parents.push(row.parentId)
      }
      for (const outcome of outcomes.filter(isRequeue)) {
        const row = owned(workerId, outcome.id)
        if (row === undefined) continue
        if (row.cancelReason !== undefined) {
          // Cancelled while it ran: it ends here instead of going back.
          moveToFinished(row, "cancelled", undefined, { _tag: "Cancelled", reason: row.cancelReason }, t)
          parents.push(row.parentId)
          continue
        }
        finishOne(row, outcome, t)
        if (row.status === "pending") queues.push(row.queue)
        else if (row.status === "scheduled" || (outcome._tag === "Suspended" && outcome.until !== undefined)) later = true
      }
      queues.push(...wakeParents(parents, t))
      if (parents.length > 0) publish({ _tag: "Finished" })
      if (later) publish({ _tag: "Scheduled" })
      signalQueues(queues)
    })

  const finish: StoreService["finish"] = finishOutcomes

  const orphans: StoreService["orphans"] = (workerId, known) =>
    read(() => {
      const knownIds = new Set(known)
      return [...active.values()]
        .filter((row) => row.status === "running" && row.leaseOwner === workerId && !knownIds.has(row.id))
        .map((row) => row.id)
    })

  const heartbeat: StoreService["heartbeat"] = (workerId, ids, leaseMillis) =>
    read((t) => {
      // A worker whose lease was taken by a recovery, or retired, holds
      // nothing, and a heartbeat does not make its lease again (see the SQL).
      if (!workers.has(workerId)) return { lost: [...ids], cancelRequested: [], dispatched: 0 }
      // The worker's lease alone changes: no execution does.
      workers.set(workerId, t + leaseMillis)
      const lost: Array<string> = []
      const cancelRequested: Array<{ id: string; reason: string }> = []
      for (const id of ids) {
        const row = owned(workerId, id)
        if (row === undefined) {
          lost.push(id)
          continue
        }
        if (row.cancelReason !== undefined) cancelRequested.push({ id, reason: row.cancelReason })
      }
      return { lost, cancelRequested, dispatched: 0 }
    })

  /** Ends the leases on `rows` as a dead worker's end (`expireLeases` in the SQL); `gaveUp`: by a live worker's word. */
  const expireLeases = (rows: ReadonlyArray<Row>, t: number, gaveUp: boolean) => {
    if (rows.length === 0) unchanged()
    const queues: Array<string> = []
    const parents: Array<string | undefined> = []
    let moved = 0
    for (const row of rows) {
      if (row.attempts < row.maxAttempts && row.cancelReason === undefined) {
        row.status = "pending"
        row.leaseOwner = undefined
        setRunAt(row, t)
        row.lastError = {
          _tag: "Defect",
          message: gaveUp
            ? `the worker running attempt ${row.attempts} gave its lease up: it could not write the outcome or renew the lease in time`
            : `the lease expired: the worker running attempt ${row.attempts} stopped heartbeating`
        }
        queues.push(row.queue)
      } else {
        const error: ErrorRecord = row.cancelReason === undefined
          ? {
            _tag: "Defect",
            message: gaveUp
              ? `the worker gave its lease up on the last attempt (${row.attempts} of ${row.maxAttempts}): it could not write the outcome or renew the lease in time`
              : `the lease expired on the last attempt (${row.attempts} of ${row.maxAttempts}): the worker stopped heartbeating`
          }
          : { _tag: "Cancelled", reason: row.cancelReason }
        moveToFinished(row, row.cancelReason === undefined ? "failed" : "cancelled", undefined, error, t)
        parents.push(row.parentId)
        moved++
      }
    }
    queues.push(...wakeParents(parents, t))
    signalQueues(queues)
    if (moved > 0) publish({ _tag: "Finished" })
    return rows.length
  }

  const recoverExpiredLeases: StoreService["recoverExpiredLeases"] = write((t) => {
    const dead = new Set<string>()
    for (const [id, expiresAt] of workers) {
      if (expiresAt < t) dead.add(id)
    }
    for (const id of dead) workers.delete(id)
    return expireLeases(
      [...active.values()].filter((row) => row.status === "running" && row.leaseOwner !== undefined && dead.has(row.leaseOwner)),
      t,
      false
    )
  })

  const abandon: StoreService["abandon"] = (workerId, ids) =>
    write((t) => expireLeases(ids.flatMap((id) => owned(workerId, id) ?? []), t, true))

  const retireWorker: StoreService["retireWorker"] = (workerId) =>
    read(() => {
      workers.delete(workerId)
    })

  const nextDue = (t: number) => {
    let next: number | undefined
    for (const row of active.values()) {
      if ((row.status === "scheduled" || row.status === "waiting") && row.runAt > t && Number.isFinite(row.runAt)) {
        if (next === undefined || row.runAt < next) next = row.runAt
      }
    }
    return next
  }

  const promoteDue: StoreService["promoteDue"] = Effect.sync(() => {
    const t = now()
    const queues: Array<string> = []
    const due = [...active.values()]
      .filter((row) => (row.status === "scheduled" || row.status === "waiting") && row.runAt <= t)
      .sort((a, b) => a.runAt - b.runAt || a.order - b.order)
    for (const row of due) {
      // run_at is kept: a promoted row keeps its place in the claim order.
      row.status = "pending"
      queues.push(row.queue)
    }
    if (due.length > 0) version++
    signalQueues(queues)
    // No batch bound here: everything due is promoted at once.
    return { next: nextDue(t), more: false }
  })

  const setRetention: StoreService["setRetention"] = (policies) =>
    write(() => {
      for (const policy of policies) retention.set(policy.task, policy)
    })

  const sweepFinished: StoreService["sweepFinished"] = (limit) =>
    write((t) => {
      const expired = [...finished.values()]
        .filter((row) => row.expiresAt !== undefined && row.expiresAt <= t && (row.parentId === undefined || !active.has(row.parentId)))
        .sort((a, b) => a.expiresAt! - b.expiresAt!)
        .slice(0, limit)
      if (expired.length === 0) unchanged()
      for (const row of expired) {
        finished.delete(row.id)
        steps.delete(row.id)
      }
      return expired.length
    })

  const cancel: StoreService["cancel"] = (id, reason) =>
    write((t): CancelResult => {
      const root = active.get(id)
      if (root === undefined) return finished.has(id) ? "finished" : "not-found"
      const rootStatus = root.status
      // The root and its unfinished descendants.
      const tree: Array<Row> = [root]
      const inTree = new Set([root.id])
      for (let i = 0; i < tree.length; i++) {
        for (const row of active.values()) {
          if (row.parentId === tree[i]!.id && !inTree.has(row.id)) {
            inTree.add(row.id)
            tree.push(row)
          }
        }
      }
      const flagged: Array<string> = []
      const parents: Array<string | undefined> = []
      let moved = 0
      for (const row of tree) {
        if (row.status === "running") {
          row.cancelReason = reason
          flagged.push(row.id)
        } else {
          moveToFinished(row, "cancelled", undefined, { _tag: "Cancelled", reason }, t)
          parents.push(row.parentId)
          moved++
        }
      }
      const queues = wakeParents(parents, t, inTree)
      if (flagged.length > 0) publish({ _tag: "Cancel", ids: flagged })
      if (moved > 0) publish({ _tag: "Finished" })
      signalQueues(queues)
      return rootStatus === "running" ? "requested" : "cancelled"
    })

  const get: StoreService["get"] = (id) =>
    read(() => {
      const row = active.get(id) ?? finished.get(id)
      return row === undefined ? undefined : toExecution(row)
    })

  const children: StoreService["children"] = (id) =>
    read(() =>
      [...active.values(), ...finished.values()]
        .filter((row) => row.parentId === id)
        .sort((a, b) => a.createdAt - b.createdAt || a.seq - b.seq)
        .map(toExecution)
    )

  const outcomes: StoreService["outcomes"] = (ids) =>
    read(() =>
      ids.flatMap((id): Array<Outcome> => {
        const row = finished.get(id)
        if (row === undefined) return []
        return [{
          id: row.id,
          task: row.task,
          status: row.status as FinalStatus,
          attempts: row.attempts,
          result: orUndefined(clone(row.result)),
          error: orUndefined(clone(row.lastError))
        }]
      })
    )

  // Every finish here is announced to all waiters (a `Finished` signal
  // without ids); the mark only keeps a task that keeps no completed
  // executions from deleting this one as it finishes.
  const awaitOutcomes: StoreService["awaitOutcomes"] = (ids) =>
    Effect.andThen(
      Effect.sync(() => {
        for (const id of ids) {
          const row = active.get(id)
          if (row !== undefined) row.awaited = true
        }
      }),
      Effect.map(outcomes(ids), (found) => ({ outcomes: found, busy: [] }))
    )

  const unknownIds: StoreService["unknownIds"] = (ids) =>
    read(() => ids.filter((id) => !active.has(id) && !finished.has(id)))

  const copyStep = (step: StepRecord): StepRecord => ({ ...step, value: clone(step.value), error: clone(step.error) })

  const stepsRead: StoreService["steps"] = (executionId) =>
    read(() => [...(steps.get(executionId)?.values() ?? [])].map(copyStep))

  const recordSteps: StoreService["recordSteps"] = (workerId, records) =>
    write((t) =>
      records.map(({ executionId, record }): StepRecord | CancelRequested | undefined => {
        const execution = owned(workerId, executionId)
        if (execution === undefined) return undefined
        const map = stepsOf(executionId)
        const existing = map.get(record.name)
        if (existing !== undefined) return copyStep(existing)
        if (execution.cancelReason !== undefined) return { _tag: "CancelRequested", reason: execution.cancelReason }
        const stored: StepRecord = {
          name: record.name,
          kind: record.kind,
          value: clone(record.value ?? null),
          error: orUndefined(clone(record.error)),
          attempt: record.attempt,
          recordedAt: t
        }
        map.set(record.name, stored)
        return copyStep(stored)
      })
    )

  const startChildren: StoreService["startChildren"] = (workerId, list) =>
    write((t) => {
      const queues: Array<string> = []
      const results = list.map((c): ChildRecord | CancelRequested | undefined => {
        const parent = owned(workerId, c.parentId)
        if (parent === undefined) return undefined
        const map = stepsOf(c.parentId)
        const existing = map.get(c.parentStep)
        if (existing !== undefined) {
          const value = existing.value as { id: string; deadline: number | null } | null
          return { id: value!.id, deadline: orUndefined(value!.deadline) }
        }
        if (parent.cancelReason !== undefined) return { _tag: "CancelRequested", reason: parent.cancelReason }
        // Stored like jsonb_build_object: no timeout is a JSON null deadline.
        const deadline = c.timeoutMillis === undefined ? null : t + c.timeoutMillis
        map.set(c.parentStep, {
          name: c.parentStep,
          kind: "child",
          value: { id: c.id, deadline },
          error: undefined,
          attempt: c.attempt,
          recordedAt: t
        })
        const row = newRow({ ...c, dedupeKey: undefined }, t + (c.delayMillis ?? 0), t)
        active.set(row.id, row)
        if (row.status === "pending") queues.push(row.queue)
        return { id: c.id, deadline: orUndefined(deadline) }
      })
      signalQueues(queues)
      return results
    })

  const store: StoreService = {
    kind: "memory",
    now: Effect.sync(now),
    insert,
    claim,
    finish,
    orphans,
    heartbeat,
    recoverExpiredLeases,
    abandon,
    retireWorker,
    // Nothing to save here: a claim is as quick as a dispatch would be.
    offers: false,
    withdrawOffer: () => Effect.succeed(0),
    reoffer: () => Effect.void,
    promoteDue,
    cancel,
    get,
    children,
    outcomes,
    awaitOutcomes,
    unknownIds,
    setRetention,
    sweepFinished,
    steps: stepsRead,
    recordSteps,
    startChildren,
    signals: PubSub.subscribe(hub),
    signalWork: (queue) => Effect.sync(() => publish({ _tag: "Work", queue }))
  }

  const inspector: MemoryInspector = {
    version: () => version,
    executions: () =>
      [...active.values(), ...finished.values()]
        .sort((a, b) => a.createdAt - b.createdAt || a.seq - b.seq)
        .map(toExecution),
    nextDue: () => nextDue(now()),
    now
  }

  return { store, inspector }
})

const isRequeue = (o: AttemptOutcome) =>
  o._tag === "Released" || o._tag === "Suspended" || (o._tag === "Failed" && o.retryDelayMillis !== undefined)

/**
 * Builds the in-memory store. Its signal hub lives as long as the scope.
 */
export const make: Effect.Effect<StoreService, never, Scope.Scope> = Effect.map(makeWithInspector, ({ store }) => store)
