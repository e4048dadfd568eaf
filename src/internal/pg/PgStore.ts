import { PgClient } from "@effect/sql-pg"
import { Effect, Layer, Option, PubSub, Queue, Schedule } from "effect"
import type { Scope } from "effect"
import { SqlClient } from "effect/sql"
import type { SqlError } from "effect/sql/SqlError"
import { InvalidConfig, type SchemaTooNew, StoreError } from "../../Errors.ts"
import type {
  AttemptOutcome,
  CancelRequested,
  CancelResult,
  ChildRecord,
  ClaimedExecution,
  ErrorRecord,
  ExecutionRow,
  Outcome,
  Signal,
  StepRecord,
  StoreService
} from "../Store.ts"
import { Store } from "../Store.ts"
import { makeFolder } from "../fold.ts"
import { warn } from "../log.ts"
import { migrate, quoteIdent } from "./migrate.ts"
import { queries } from "./queries.ts"

/** Options of the Postgres store. */
export interface PgStoreOptions {
  /** The Postgres schema holding effect-conductor's tables. Default `"conductor"`. */
  readonly schema?: string | undefined
  /** Apply migrations when the layer starts. Default true. */
  readonly migrate?: boolean | undefined
}

const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,39}$/

const toStoreError = (operation: string) => (cause: SqlError) => {
  // The driver's message says where it failed ("Query failed"); its cause says why.
  const why = (cause.reason as { readonly cause?: unknown }).cause
  const detail = why instanceof Error && why.message !== cause.message ? `: ${why.message}` : ""
  return new StoreError({ message: `${operation} failed: ${cause.message}${detail}`, cause })
}

/** Epoch ms of a timestamp; undefined for NULL and for 'infinity' (waiting without a deadline). */
const ms = (value: unknown): number | undefined => {
  if (value === null || value === undefined) return undefined
  const n = value instanceof Date ? value.getTime() : Number(value)
  return Number.isFinite(n) ? n : undefined
}

const json = (value: unknown): string | null => value === undefined ? null : JSON.stringify(value)

/**
 * Array parameters travel as Postgres array literals (`{"a","b",NULL}`) and
 * take their type from the statement's cast (`$2::uuid[]`). Building one
 * string is a join; a binary array costs the driver a call per element (for a
 * worker's batch of 800 outcomes, a fifth of its CPU). Elements are always
 * quoted, so no value can add or split an element; NULL is SQL NULL. JSON
 * travels as text and is cast in SQL, so JSON null and SQL NULL stay apart.
 */
const element = (value: string): string =>
  value.includes("\\") || value.includes('"') ? `"${value.replace(/["\\]/g, "\\$&")}"` : `"${value}"`
const literal = <A>(show: (value: A) => string) => (values: ReadonlyArray<A | null | undefined>): string =>
  // join makes one flat string, which the driver copies out in one call
  `{${values.map((value) => (value === null || value === undefined ? "NULL" : show(value))).join(",")}}`
const uuids = literal(element)
const texts = literal(element)
const ints = literal((value: number) => String(value))
const floats = literal((value: number) => String(value))

const orUndefined = <A>(value: A | null | undefined): A | undefined => value === null ? undefined : value

/**
 * Signals travel on one channel per schema, so one LISTEN connection per
 * process serves all of them. `Dispatched` ones are sent by the invoke's own
 * statement (queries.ts `insertOne`).
 */
const encodeSignal = (signal: Exclude<Signal, { readonly _tag: "Dispatched" }>): string => {
  switch (signal._tag) {
    case "Work":
      return `w:${signal.queue}`
    case "Cancel":
      return `c:${signal.ids.join(",")}`
    case "Finished":
      return signal.ids === undefined ? "f" : `f:${signal.ids.join(",")}`
    case "Scheduled":
      return "s"
    case "Reconnected":
      return "r"
  }
}

const decodeSignal = (payload: string): Signal | undefined => {
  switch (payload[0]) {
    case "w":
      return { _tag: "Work", queue: payload.slice(2) }
    case "c":
      return { _tag: "Cancel", ids: payload.slice(2).split(",") }
    case "f":
      return payload.length > 2 ? { _tag: "Finished", ids: payload.slice(2).split(",") } : { _tag: "Finished" }
    case "s":
      return { _tag: "Scheduled" }
    case "d": {
      // An execution leased to an idle worker by its invoke (migrations/0011).
      let d: any
      try {
        d = JSON.parse(payload.slice(2))
      } catch {
        // Never sent by this library's statements; were it, the execution
        // would be leased here unseen: look for it as after a lost connection.
        return { _tag: "Reconnected", afterLoss: true }
      }
      return {
        _tag: "Dispatched",
        workerId: d.worker,
        execution: {
          id: d.id,
          task: d.task,
          payload: d.payload,
          attempt: 1,
          maxAttempts: d.maxAttempts,
          parentId: orUndefined(d.parentId),
          fresh: true
        }
      }
    }
    default:
      return undefined
  }
}

const rowToExecution = (row: any): ExecutionRow => ({
  id: row.id,
  task: row.task,
  queue: row.queue,
  status: row.status,
  priority: row.priority,
  payload: row.payload,
  attempts: row.attempts,
  maxAttempts: row.max_attempts,
  runAt: ms(row.run_at),
  dedupeKey: orUndefined(row.dedupe_key),
  parentId: orUndefined(row.parent_id),
  parentStep: orUndefined(row.parent_step),
  result: orUndefined(row.result),
  error: orUndefined(row.error) as ErrorRecord | undefined,
  cancelReason: orUndefined(row.cancel_reason),
  createdAt: ms(row.created_at)!,
  startedAt: ms(row.started_at),
  finishedAt: ms(row.finished_at)
})

/**
 * Builds the Postgres store on the `PgClient` in context. The signal listener
 * (one connection, one channel) lives as long as the scope.
 */
export const make = (
  options: PgStoreOptions = {}
): Effect.Effect<StoreService, StoreError | SchemaTooNew | InvalidConfig, PgClient.PgClient | Scope.Scope> =>
  Effect.gen(function*() {
    const schema = options.schema ?? "conductor"
    if (!SCHEMA_NAME.test(schema)) {
      return yield* new InvalidConfig({
        message: `Invalid schema name "${schema}": use lowercase letters, digits and _ (at most 40 characters)`
      })
    }
    const pg = yield* PgClient.PgClient
    const sql = pg as SqlClient.SqlClient
    if (options.migrate ?? true) yield* migrate(sql, schema)

    const Q = queries(quoteIdent(schema))
    const channel = `${schema}_conductor`
    /**
     * A statement prepared once per connection. Postgres may then keep a
     * generic plan made with the statistics of that moment, so this is for
     * the hot statements that cannot go wrong that way: the per-batch ones
     * call functions planned without sequential scans (migrations/0003,
     * 0004), and an insert reads no table.
     */
    const run = <A extends object = any>(operation: string, text: string, params: ReadonlyArray<unknown> = []) =>
      Effect.mapError(sql.unsafe<A>(text, params), toStoreError(operation))
    /**
     * `run` with each row as an array of its column values, in the statement's
     * order: the driver builds no object per row (for a claim of 800 rows
     * that the store maps to objects of its own anyway).
     */
    const runValues = (operation: string, text: string, params: ReadonlyArray<unknown> = []) =>
      Effect.mapError(sql.unsafe(text, params).values, toStoreError(operation))
    /**
     * A statement planned at every call, with the table's current size. For
     * reads and periodic statements: a generic plan made while a table was
     * small (a sequential scan) and kept by a prepared statement read the
     * whole table on every call once it had grown, until the next ANALYZE.
     */
    const runPlanned = <A extends object = any>(operation: string, text: string, params: ReadonlyArray<unknown> = []) =>
      Effect.mapError(sql.unsafe<A>(text, params).unprepared, toStoreError(operation))

    // --- signals: one listener connection, re-subscribed after a loss ---
    // Opened by the first subscriber (a worker, a result waiter), so a process
    // that only invokes holds no LISTEN connection and is not woken by the
    // notifications meant for workers. Its first signal is Reconnected, once
    // the LISTEN is in place.
    const scope = yield* Effect.scope
    const hub = yield* PubSub.unbounded<Signal>()
    // Workers offer idle slots (see claim) only while the LISTEN is in place:
    // what an invoke hands them travels in a NOTIFY.
    let listenerUp = false
    let listenedBefore = false
    const listener = Effect.gen(function*() {
      const queue = yield* pg.listen(channel)
      listenerUp = true
      yield* PubSub.publish(hub, { _tag: "Reconnected", afterLoss: listenedBefore })
      listenedBefore = true
      while (true) {
        const notification = yield* Queue.take(queue)
        const signal = decodeSignal(notification.payload)
        if (signal !== undefined) yield* PubSub.publish(hub, signal)
      }
    }).pipe(
      Effect.scoped,
      Effect.tapError((error) => Effect.andThen(Effect.sync(() => (listenerUp = false)), warn("listening for signals (reconnecting)")(error))),
      Effect.retry(Schedule.spaced("250 millis"))
    )
    let listening = false
    const signals: StoreService["signals"] = Effect.flatMap(PubSub.subscribe(hub), (subscription) =>
      Effect.suspend(() => {
        if (listening) return Effect.succeed(subscription)
        listening = true
        return Effect.as(Effect.forkIn(listener, scope), subscription)
      }))

    const send = (signal: Exclude<Signal, { readonly _tag: "Dispatched" }>) =>
      pg.notify(channel, encodeSignal(signal)).pipe(
        Effect.catch(warn("NOTIFY"))
      )
    // A burst of Work signals for a queue costs one NOTIFY in flight plus one
    // folded follow-up; the first goes out at once.
    const workFolder = makeFolder(scope, (queue: string) => send({ _tag: "Work", queue }))
    const finishedFolder = makeFolder(scope, (_: "f") => send({ _tag: "Finished" }))
    const scheduledFolder = makeFolder(scope, (_: "s") => send({ _tag: "Scheduled" }))
    const signalWork = (queue: string) => workFolder(queue)
    const signalQueues = (queues: ReadonlyArray<string> | null | undefined) =>
      queues && queues.length > 0 ? Effect.forEach(queues, signalWork, { discard: true }) : Effect.void

    // Queues with an insert in flight that carries its own NOTIFY. Inserts for
    // such a queue skip theirs and signal after their commit instead, through
    // the folder: a burst costs one notification in the first statement plus
    // at most two folded ones, and the first goes out with no extra round trip.
    const notifying = new Map<string, number>()
    const insert: StoreService["insert"] = (all) => {
      if (all.length === 0) return Effect.succeed([])
      // A dedupe key repeated within one batch would make ON CONFLICT DO UPDATE
      // touch its row twice (an error): send the first; the rest map to it below.
      const seen = new Set<string>()
      const executions = all.filter((e) => {
        if (e.dedupeKey === undefined) return true
        const key = `${e.task}\u0000${e.dedupeKey}`
        if (seen.has(key)) return false
        seen.add(key)
        return true
      })
      const batchQueues = [...new Set(executions.map((e) => e.queue))]
      const carry = batchQueues.every((queue) => !notifying.has(queue))
      return Effect.gen(function*() {
        if (carry) for (const queue of batchQueues) notifying.set(queue, (notifying.get(queue) ?? 0) + 1)
        const one = executions.length === 1 && executions[0]!.dedupeKey === undefined ? executions[0]! : undefined
        // Inside the caller's transaction, an invoke must not hold an idle
        // worker's row (its claims and heartbeats would wait for the caller).
        const inTransaction = one !== undefined && Option.isSome(yield* Effect.serviceOption(sql.transactionService))
        const rows = yield* run<{ id: string; task: string; dedupe_key: string | null; queue: string; status: string; created: boolean }>(
          "insert",
          one ? Q.insertOne : Q.insert,
          one ? [
            one.id,
            one.task,
            one.queue,
            one.priority,
            JSON.stringify(one.payload ?? null),
            one.maxAttempts,
            one.runAt ?? null,
            one.delayMillis ?? null,
            one.parentId ?? null,
            one.parentStep ?? null,
            carry ? channel : null,
            inTransaction ? null : channel
          ] : [
            uuids(executions.map((e) => e.id)),
            texts(executions.map((e) => e.task)),
            texts(executions.map((e) => e.queue)),
            ints(executions.map((e) => e.priority)),
            texts(executions.map((e) => JSON.stringify(e.payload ?? null))),
            ints(executions.map((e) => e.maxAttempts)),
            floats(executions.map((e) => e.runAt ?? null)),
            floats(executions.map((e) => e.delayMillis ?? null)),
            texts(executions.map((e) => e.dedupeKey ?? null)),
            uuids(executions.map((e) => e.parentId ?? null)),
            texts(executions.map((e) => e.parentStep ?? null)),
            carry ? channel : null
          ]
        ).pipe(Effect.ensuring(Effect.sync(() => {
          if (!carry) return
          for (const queue of batchQueues) {
            const n = notifying.get(queue)! - 1
            if (n === 0) notifying.delete(queue)
            else notifying.set(queue, n)
          }
        })))
        const queues = carry ? [] : [...new Set(rows.filter((row) => row.status === "pending").map((row) => row.queue))]
        const scheduled = rows.some((row) => row.created && row.status === "scheduled")
        if (queues.length > 0 || scheduled) {
          yield* sql.afterCommit(Effect.andThen(signalQueues(queues), scheduled ? scheduledFolder("s") : Effect.void))
        }
        const byId = new Map(rows.map((row) => [row.id, row]))
        const byDedupe = new Map(rows.map((row) => [`${row.task}\u0000${row.dedupe_key}`, row]))
        return all.map((e) => {
          const row = byId.get(e.id) ?? byDedupe.get(`${e.task}\u0000${e.dedupeKey}`)!
          return { id: row.id, created: row.id === e.id && row.created }
        })
      })
    }

    /** The claim's rows as value arrays, in the order of queries.ts `claim`'s columns. */
    const toClaimed = (rows: ReadonlyArray<ReadonlyArray<any>>): ReadonlyArray<ClaimedExecution> =>
      rows.map((row) => ({
        id: row[0],
        task: row[1],
        payload: row[2],
        attempt: row[3],
        maxAttempts: row[4],
        parentId: orUndefined(row[5]),
        fresh: row[6] === true
      }))

    const claim: StoreService["claim"] = (o) =>
      Effect.map(
        runValues("claim", Q.claim, [
          o.queue,
          texts(o.tasks),
          o.limit,
          o.workerId,
          o.leaseMillis,
          listenerUp ? o.offer ?? 0 : 0,
          o.offerMillis ?? 0,
          o.received ?? 0,
          o.after ?? null
        ]),
        toClaimed
      )

    const finish: StoreService["finish"] = (workerId, outcomes) =>
      Effect.gen(function*() {
        // The finished ones, as the statement's parallel arrays.
        const final = { ids: [] as Array<string>, statuses: [] as Array<string>, results: [] as Array<string | null>, errors: [] as Array<string | null> }
        const end = (id: string, status: string, result: string | null, error: string | null) => {
          final.ids.push(id)
          final.statuses.push(status)
          final.results.push(result)
          final.errors.push(error)
        }
        const requeue: Array<{ id: string; next: string; at: number | null; error: string | null }> = []
        // Completed executions of tasks that keep none: deleted by a plain statement first.
        const discard: Array<AttemptOutcome & { readonly _tag: "Completed" }> = []
        for (const o of outcomes) {
          switch (o._tag) {
            case "Completed":
              if (o.discard !== undefined) discard.push(o)
              else end(o.id, "completed", json(o.result ?? null), null)
              break
            case "Failed":
              if (o.retryDelayMillis === undefined) {
                end(o.id, "failed", null, json(o.error))
              } else {
                requeue.push({ id: o.id, next: "retry", at: o.retryDelayMillis, error: json(o.error) })
              }
              break
            case "Cancelled":
              end(o.id, "cancelled", null, json({ _tag: "Cancelled", reason: o.reason } satisfies ErrorRecord))
              break
            case "Released":
              requeue.push({ id: o.id, next: "release", at: null, error: null })
              break
            case "Suspended":
              requeue.push({ id: o.id, next: "suspend", at: o.until ?? null, error: null })
              break
          }
        }
        const queues = new Set<string>()
        // Requeues first, then finishes: retrying the whole call after either
        // fails is safe (both are fenced by the lease).
        if (requeue.length > 0) {
          const rows = yield* run<{ queue: string; status: string; run_at_ms: number }>("requeue", Q.requeue, [
            workerId,
            uuids(requeue.map((r) => r.id)),
            texts(requeue.map((r) => r.next)),
            floats(requeue.map((r) => r.at)),
            texts(requeue.map((r) => r.error)),
            channel
          ])
          for (const row of rows) if (row.status === "pending") queues.add(row.queue)
          // Only a finite due time needs workers to re-read the earliest one.
          if (rows.some((row) => row.status !== "pending" && Number.isFinite(row.run_at_ms))) {
            yield* scheduledFolder("s")
          }
        }
        if (discard.length > 0) {
          const rows = yield* run<{ id: string }>("discard", Q.discard, [
            workerId,
            uuids(discard.map((o) => o.id)),
            uuids(discard.filter((o) => o.discard!.steps).map((o) => o.id))
          ])
          // What is awaited, has a parent or was asked to cancel is finished as usual.
          if (rows.length > 0) {
            const left = new Set(rows.map((row) => row.id))
            for (const o of discard) if (left.has(o.id)) end(o.id, "completed", json(o.result ?? null), null)
          }
        }
        if (final.ids.length > 0) {
          yield* run("finish", Q.finish, [
            workerId,
            uuids(final.ids),
            texts(final.statuses),
            texts(final.results),
            texts(final.errors),
            channel
          ])
        }
        yield* signalQueues([...queues])
      })

    const orphans: StoreService["orphans"] = (workerId, known) =>
      Effect.map(runPlanned<{ id: string }>("orphans", Q.orphans, [workerId, uuids(known)]), (rows) => rows.map((row) => row.id))

    const heartbeat: StoreService["heartbeat"] = (workerId, ids, leaseMillis) =>
      Effect.map(
        runPlanned<{ dispatched: string; id: string | null; cancel_reason: string | null }>("heartbeat", Q.heartbeat, [
          workerId,
          uuids(ids),
          leaseMillis
        ]),
        (rows) => {
          const held = rows.filter((row): row is typeof row & { id: string } => row.id !== null)
          const kept = new Set(held.map((row) => row.id))
          return {
            lost: ids.filter((id) => !kept.has(id)),
            cancelRequested: held.flatMap((row) =>
              row.cancel_reason === null ? [] : [{ id: row.id, reason: row.cancel_reason }]
            ),
            dispatched: rows.length > 0 ? Number(rows[0]!.dispatched) : 0
          }
        }
      )

    /** Ends the leases of `owners` (on `ids` only, when given) as a dead worker's; signals what that changed. */
    const expireLeases = (operation: string, owners: ReadonlyArray<string>, ids: ReadonlyArray<string> | null) =>
      Effect.gen(function*() {
        const [row] = yield* runPlanned<{ touched: number; queues: Array<string>; finished: number }>(
          operation,
          Q.expireLeases,
          [uuids(owners), ids === null ? null : uuids(ids), ids !== null]
        )
        yield* sql.afterCommit(Effect.andThen(
          signalQueues(row?.queues),
          (row?.finished ?? 0) > 0 ? finishedFolder("f") : Effect.void
        ))
        return row?.touched ?? 0
      })

    const recoverExpiredLeases = Effect.gen(function*() {
      const dead = yield* runPlanned<{ id: string }>("recoverExpiredLeases", Q.deadWorkers)
      if (dead.length === 0) return 0
      // In the same transaction: a worker's row must not go without its executions.
      return yield* expireLeases("recoverExpiredLeases", dead.map((row) => row.id), null)
    }).pipe(
      sql.withTransaction,
      Effect.mapError((e) => (e._tag === "StoreError" ? e : toStoreError("recoverExpiredLeases")(e)))
    )

    const abandon: StoreService["abandon"] = (workerId, ids) =>
      ids.length === 0 ? Effect.succeed(0) : expireLeases("abandon", [workerId], ids)

    const withdrawOffer: StoreService["withdrawOffer"] = (workerId) =>
      Effect.map(
        runPlanned<{ dispatched: string }>("withdrawOffer", Q.withdrawOffer, [workerId]),
        (rows) => rows.length === 0 ? 0 : Number(rows[0]!.dispatched)
      )

    const reoffer: StoreService["reoffer"] = (workerId, slots) =>
      // Offers are made only while the listener is up (see claim).
      listenerUp ? Effect.asVoid(runPlanned("reoffer", Q.reoffer, [workerId, slots])) : Effect.void

    const retireWorker: StoreService["retireWorker"] = (workerId, dispatched) =>
      Effect.asVoid(runPlanned("retireWorker", Q.retireWorker, [workerId, dispatched]))

    const promoteDue: StoreService["promoteDue"] = Effect.gen(function*() {
      const [row] = yield* runPlanned<{ queues: Array<string>; more: boolean; next_ms: number | null }>("promoteDue", Q.promoteDue)
      yield* signalQueues(row?.queues)
      return { next: orUndefined(row?.next_ms), more: row?.more ?? false }
    })

    const setRetention: StoreService["setRetention"] = (policies) =>
      policies.length === 0 ? Effect.void : Effect.asVoid(runPlanned("setRetention", Q.setRetention, [
        texts(policies.map((p) => p.task)),
        floats(policies.map((p) => p.completedMillis ?? null)),
        floats(policies.map((p) => p.failedMillis ?? null))
      ]))

    const sweepFinished: StoreService["sweepFinished"] = (limit) =>
      Effect.map(runPlanned<{ deleted: number }>("sweepFinished", Q.sweep, [limit]), (rows) => rows[0]?.deleted ?? 0)

    const cancel: StoreService["cancel"] = (id, reason) =>
      Effect.gen(function*() {
        const [row] = yield* runPlanned<{
          root_status: string | null
          flagged: Array<string>
          finished: number
          queues: Array<string>
          already_finished: boolean
        }>("cancel", Q.cancel, [id, reason]).pipe(
          sql.withTransaction,
          Effect.mapError((e) => (e._tag === "StoreError" ? e : toStoreError("cancel")(e))),
          // Locking a tree while its children finish can deadlock; the loser retries.
          Effect.retry({ times: 3 })
        )
        if (row === undefined) return "not-found" as CancelResult
        if (row.flagged.length > 0) yield* send({ _tag: "Cancel", ids: row.flagged })
        if (row.finished > 0) yield* finishedFolder("f")
        yield* signalQueues(row.queues)
        if (row.root_status === null) {
          if (row.already_finished) return "finished"
          // It may have finished while the cancel waited for its lock: look again.
          const [again] = yield* runPlanned<{ finished: boolean }>("cancel", Q.finishedExists, [id])
          return again?.finished ? "finished" : "not-found"
        }
        return row.root_status === "running" ? "requested" : "cancelled"
      })

    const get: StoreService["get"] = (id) =>
      Effect.gen(function*() {
        const active = yield* runPlanned("get", Q.getActive, [id])
        if (active.length > 0) return rowToExecution(active[0])
        const finished = yield* runPlanned("get", Q.getFinished, [id])
        return finished.length > 0 ? rowToExecution(finished[0]) : undefined
      })

    const children: StoreService["children"] = (id) =>
      Effect.gen(function*() {
        const active = yield* runPlanned("children", Q.childrenActive, [id])
        const finished = yield* runPlanned("children", Q.childrenFinished, [id])
        return [...active, ...finished].map(rowToExecution).sort((a, b) => a.createdAt - b.createdAt)
      })

    const toOutcome = (row: any): Outcome => ({
      id: row.id,
      task: row.task,
      status: row.status,
      attempts: row.attempts,
      result: orUndefined(row.result),
      error: orUndefined(row.error)
    })
    const outcomes: StoreService["outcomes"] = (ids) =>
      ids.length === 0 ? Effect.succeed([]) : Effect.map(run<any>("outcomes", Q.outcomes, [uuids(ids)]), (rows) => rows.map(toOutcome))

    const awaitOutcomes: StoreService["awaitOutcomes"] = (ids) =>
      ids.length === 0 ? Effect.succeed({ outcomes: [], busy: [] }) : Effect.map(
        run<any>("awaitOutcomes", Q.awaitOutcomes, [uuids(ids), channel]),
        (rows) => ({
          outcomes: rows.filter((row) => !row.busy).map(toOutcome),
          busy: rows.filter((row) => row.busy).map((row) => row.id as string)
        })
      )

    const unknownIds: StoreService["unknownIds"] = (ids) =>
      ids.length === 0 ? Effect.succeed([]) : Effect.map(
        runPlanned<{ id: string }>("unknownIds", Q.unknownIds, [uuids(ids)]),
        (rows) => rows.map((row) => row.id)
      )

    const toStep = (row: any): StepRecord => ({
      name: row.name,
      kind: row.kind,
      value: row.value,
      error: orUndefined(row.error),
      attempt: row.attempt,
      recordedAt: row.recorded_ms
    })

    const steps: StoreService["steps"] = (executionId) =>
      Effect.map(runPlanned<any>("steps", Q.steps, [executionId]), (rows) => rows.map(toStep))

    const recordSteps: StoreService["recordSteps"] = (workerId, records) =>
      records.length === 0 ? Effect.succeed([]) : Effect.map(
        run<any>("recordSteps", Q.recordSteps, [
          workerId,
          uuids(records.map((r) => r.executionId)),
          texts(records.map((r) => r.record.name)),
          texts(records.map((r) => r.record.kind)),
          texts(records.map((r) => json(r.record.value ?? null))),
          texts(records.map((r) => json(r.record.error))),
          ints(records.map((r) => r.record.attempt))
        ]),
        (rows) => {
          const result: Array<StepRecord | CancelRequested | undefined> = new Array(records.length).fill(undefined)
          for (const row of rows) {
            const { record } = records[row.ord - 1]!
            result[row.ord - 1] = row.cancel_reason !== null
              ? { _tag: "CancelRequested", reason: row.cancel_reason }
              : row.kind === null
              // Inserted by this statement: stored as given.
              ? { ...record, value: record.value ?? null, error: record.error ?? undefined, recordedAt: row.recorded_ms }
              : toStep({ ...row, name: record.name })
          }
          return result
        }
      )

    const startChildren: StoreService["startChildren"] = (workerId, list) =>
      list.length === 0 ? Effect.succeed([]) : Effect.gen(function*() {
        const rows = yield* run<{
          parent_id: string
          parent_step: string
          child_id: string | null
          deadline_ms: number | null
          started_queue: string | null
          cancel_reason: string | null
        }>(
          "startChildren",
          Q.startChildren,
          [
            workerId,
            uuids(list.map((c) => c.id)),
            texts(list.map((c) => c.task)),
            texts(list.map((c) => c.queue)),
            ints(list.map((c) => c.priority)),
            texts(list.map((c) => JSON.stringify(c.payload ?? null))),
            ints(list.map((c) => c.maxAttempts)),
            floats(list.map((c) => c.delayMillis ?? null)),
            uuids(list.map((c) => c.parentId)),
            texts(list.map((c) => c.parentStep)),
            ints(list.map((c) => c.attempt)),
            floats(list.map((c) => c.timeoutMillis ?? null))
          ]
        )
        yield* signalQueues([...new Set(rows.flatMap((row) => row.started_queue === null ? [] : [row.started_queue]))])
        const found = new Map(rows.map((row) => [`${row.parent_id}\u0000${row.parent_step}`, row]))
        return list.map((c): ChildRecord | CancelRequested | undefined => {
          const row = found.get(`${c.parentId}\u0000${c.parentStep}`)
          if (row === undefined) return undefined
          if (row.child_id !== null) return { id: row.child_id, deadline: orUndefined(row.deadline_ms) }
          return row.cancel_reason === null ? undefined : { _tag: "CancelRequested", reason: row.cancel_reason }
        })
      })

    const now = Effect.map(run<{ now: number }>("now", Q.now), (rows) => rows[0]!.now)

    return {
      kind: "postgres",
      now,
      insert,
      claim,
      finish,
      orphans,
      heartbeat,
      recoverExpiredLeases,
      abandon,
      retireWorker,
      withdrawOffer,
      reoffer,
      offers: true,
      promoteDue,
      setRetention,
      sweepFinished,
      cancel,
      get,
      children,
      outcomes,
      awaitOutcomes,
      unknownIds,
      steps,
      recordSteps,
      startChildren,
      signals,
      signalWork
    } satisfies StoreService
  })

/** The Postgres store as a layer over a `PgClient`. */
export const layer = (
  options: PgStoreOptions = {}
): Layer.Layer<Store, StoreError | SchemaTooNew | InvalidConfig, PgClient.PgClient> =>
  Layer.effect(Store, make(options))
