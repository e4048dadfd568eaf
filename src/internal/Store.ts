/**
 * The persistence interface the engine (Conductor, Worker, the durable-op
 * interpreter) is written against. `PgStore` and `MemoryStore` implement it;
 * nothing above this file knows which one it talks to.
 *
 * Times are epoch milliseconds read from the store's own clock (Postgres
 * `now()`, or Effect's `Clock` in memory). Values are JSON (already encoded
 * with the task's schemas).
 */
import { Context } from "effect"
import type { Effect, PubSub, Scope } from "effect"
import type { StoreError } from "../Errors.ts"

export type Json = unknown

/** The states of an unfinished execution (see migrations/0001). */
export type ActiveStatus = "pending" | "scheduled" | "running" | "waiting"
export type FinalStatus = "completed" | "failed" | "cancelled"
export type Status = ActiveStatus | FinalStatus

export interface NewExecution {
  readonly id: string
  readonly task: string
  readonly queue: string
  readonly payload: Json
  readonly priority: number
  readonly maxAttempts: number
  /** Absolute time, or undefined for "now". */
  readonly runAt?: number | undefined
  /** Relative delay from the store's now (ms); ignored when runAt is set. */
  readonly delayMillis?: number | undefined
  readonly dedupeKey?: string | undefined
  readonly parentId?: string | undefined
  readonly parentStep?: string | undefined
}

/** A child execution started from a parent's durable `invoke`. */
export interface NewChild extends NewExecution {
  readonly parentId: string
  readonly parentStep: string
  /** The parent's attempt, recorded on its step. */
  readonly attempt: number
  /** Store-clock deadline is now + this; undefined for none. */
  readonly timeoutMillis: number | undefined
}

/** The value of a "child" step. */
export interface ChildRecord {
  readonly id: string
  /** Store-clock ms after which the parent stops waiting; undefined for none. */
  readonly deadline: number | undefined
}

/**
 * Nothing was recorded (no step, no child started): the execution's cancel
 * was requested, and it will end cancelled whatever it does next.
 */
export interface CancelRequested {
  readonly _tag: "CancelRequested"
  readonly reason: string
}

export interface InsertResult {
  readonly id: string
  /** false when a dedupe key matched an unfinished execution, whose id is returned */
  readonly created: boolean
}

export interface ClaimOptions {
  readonly queue: string
  readonly tasks: ReadonlyArray<string>
  readonly limit: number
  readonly workerId: string
  readonly leaseMillis: number
  /**
   * Slots to offer if the claim comes back short (the queue looked empty):
   * a store that dispatches (`offers`) may then lease up to this many new
   * executions of `tasks` to the worker straight from their invokes, for
   * `offerMillis`, and deliver each as a `Dispatched` signal. The claim ends
   * any earlier offer.
   */
  readonly offer?: number | undefined
  readonly offerMillis?: number | undefined
  /**
   * The dispatches the worker has received so far: those the store counted
   * beyond it are still on their way, and take offered slots.
   */
  readonly received?: number | undefined
  /**
   * The last execution of the worker's previous claim, which came back full:
   * the claim may start after it in claim order, past what that claim took.
   * What lies before it (a higher priority, work promoted since) is left to a
   * claim without it; still, the claim comes back short only when the queue
   * looked empty. A store may ignore it.
   */
  readonly after?: string | undefined
}

export interface ClaimedExecution {
  readonly id: string
  readonly task: string
  readonly payload: Json
  /** This attempt's number (1-based), already counted. */
  readonly attempt: number
  readonly maxAttempts: number
  readonly parentId: string | undefined
  /** Claimed for the first time: it cannot have recorded steps yet. */
  readonly fresh: boolean
}

/** The record of one durable operation inside an execution. */
export interface StepRecord {
  readonly name: string
  readonly kind: "step" | "sleep" | "child"
  /** step: encoded success; sleep: wake time (ms); child: { id, deadline } */
  readonly value: Json
  /** step only: encoded declared failure (then value is null) */
  readonly error: Json | undefined
  readonly attempt: number
  readonly recordedAt: number
}

export interface ExecutionRow {
  readonly id: string
  readonly task: string
  readonly queue: string
  readonly status: Status
  readonly priority: number
  readonly payload: Json
  readonly attempts: number
  readonly maxAttempts: number
  readonly runAt: number | undefined
  readonly dedupeKey: string | undefined
  readonly parentId: string | undefined
  readonly parentStep: string | undefined
  /** completed: the encoded success */
  readonly result: Json | undefined
  /** failed: the final error; active: the last failed attempt's error */
  readonly error: ErrorRecord | undefined
  readonly cancelReason: string | undefined
  readonly createdAt: number
  readonly startedAt: number | undefined
  readonly finishedAt: number | undefined
}

/**
 * A stored failure. `typed` failures hold the task's error encoded with its
 * schema in `value`; defects hold a readable `message` (and stack when known).
 */
export type ErrorRecord =
  | { readonly _tag: "Typed"; readonly value: Json }
  | { readonly _tag: "Defect"; readonly message: string }
  | { readonly _tag: "Cancelled"; readonly reason: string }

/** The end of an execution as `result` reports it. */
export interface Outcome {
  readonly id: string
  readonly task: string
  readonly status: FinalStatus
  readonly attempts: number
  readonly result: Json | undefined
  readonly error: ErrorRecord | undefined
}

/** How long a task's finished executions are kept, in ms; undefined: for good. */
export interface RetentionPolicy {
  readonly task: string
  readonly completedMillis: number | undefined
  /** Failed and cancelled executions. */
  readonly failedMillis: number | undefined
}

/** A finished execution stays in the history at least this long, whatever its retention: whoever its finish woke reads it after the commit. */
export const minimumRetentionMillis = 60_000

/** A worker's finished attempt, written back in a batch and fenced by its lease. */
export type AttemptOutcome =
  | {
    readonly _tag: "Completed"
    readonly id: string
    readonly result: Json
    /**
     * The task keeps no completed executions (retention 0): unless a result
     * waiter or a parent needs it, it is deleted instead of moved to the
     * history. `steps`: it may have step records (to delete with it).
     */
    readonly discard?: { readonly steps: boolean } | undefined
  }
  /** retryAt undefined: no attempts left, the execution fails for good */
  | { readonly _tag: "Failed"; readonly id: string; readonly error: ErrorRecord; readonly retryDelayMillis: number | undefined }
  /** Given back without using up the attempt (shutdown). */
  | { readonly _tag: "Released"; readonly id: string }
  /**
   * Suspended until `until` (store clock; undefined: no deadline) or until
   * woken by what it waits for (a child finishing), whichever comes first.
   * The attempt is given back.
   */
  | { readonly _tag: "Suspended"; readonly id: string; readonly until: number | undefined }
  /** A cancel request reached the running handler, which stopped. */
  | { readonly _tag: "Cancelled"; readonly id: string; readonly reason: string }

/** Cross-process signals: new work, cancel requests, finished executions. */
export type Signal =
  | { readonly _tag: "Work"; readonly queue: string }
  /** Something was scheduled for later: workers re-read the earliest due time. */
  | { readonly _tag: "Scheduled" }
  | { readonly _tag: "Cancel"; readonly ids: ReadonlyArray<string> }
  /** Executions finished: these ids, or (without ids) any of them. */
  | { readonly _tag: "Finished"; readonly ids?: ReadonlyArray<string> | undefined }
  /**
   * The signal connection is in place: anything may have been missed
   * (`afterLoss`: an earlier one was lost, and with it perhaps `Dispatched`
   * signals).
   */
  | { readonly _tag: "Reconnected"; readonly afterLoss?: boolean | undefined }
  /** An invoke leased a new execution to an idle worker that offered a slot (see ClaimOptions.offer). */
  | { readonly _tag: "Dispatched"; readonly workerId: string; readonly execution: ClaimedExecution }

export interface HeartbeatResult {
  /** Executions this worker no longer owns (lease expired and recovered, or finished elsewhere). */
  readonly lost: ReadonlyArray<string>
  /** Executions with a pending cancel request (fallback when a NOTIFY was lost). */
  readonly cancelRequested: ReadonlyArray<{ readonly id: string; readonly reason: string }>
  /**
   * How many executions invokes have dispatched to this worker so far (see
   * ClaimOptions.offer; 0 from a store that does not dispatch).
   */
  readonly dispatched: number
}

export type CancelResult =
  /** It was not running and is now cancelled. */
  | "cancelled"
  /** It is running; the worker was asked to stop it. */
  | "requested"
  /** It had already finished (completed, failed or cancelled). */
  | "finished"
  | "not-found"

export interface StoreService {
  /** A human-readable name ("postgres", "memory"), for logs. */
  readonly kind: string
  /** Milliseconds on the store's clock. */
  readonly now: Effect.Effect<number, StoreError>

  /** Writes executions in one statement; joins the caller's transaction when there is one. */
  readonly insert: (executions: ReadonlyArray<NewExecution>) => Effect.Effect<ReadonlyArray<InsertResult>, StoreError>

  /**
   * Claims up to `limit` pending executions of `tasks` in `queue`, highest
   * priority first then oldest run_at, counting an attempt and leasing each
   * to `workerId`. Leases are the worker's: a claim (like a heartbeat) extends
   * its lease by `leaseMillis`, and that lease covers everything leased to it.
   */
  readonly claim: (options: ClaimOptions) => Effect.Effect<ReadonlyArray<ClaimedExecution>, StoreError>

  /**
   * Writes finished attempts back. Every write is fenced by the lease: an
   * outcome for an execution `workerId` no longer owns changes nothing.
   * Finishing an execution wakes its parent.
   */
  readonly finish: (workerId: string, outcomes: ReadonlyArray<AttemptOutcome>) => Effect.Effect<void, StoreError>

  /**
   * The executions leased to `workerId` that are not in `known`: what a claim
   * took whose reply never reached the worker (it committed, then the
   * connection broke). The worker gives them back with a `Released` outcome.
   */
  readonly orphans: (workerId: string, known: ReadonlyArray<string>) => Effect.Effect<ReadonlyArray<string>, StoreError>

  /**
   * Extends the lease of `workerId` by `leaseMillis` (sent even when it holds
   * nothing, so an idle worker is not taken for dead), and says which of
   * `ids` it no longer holds and which have a cancel request.
   */
  readonly heartbeat: (workerId: string, ids: ReadonlyArray<string>, leaseMillis: number) => Effect.Effect<HeartbeatResult, StoreError>

  /**
   * Forgets the workers whose lease expired and makes their executions
   * runnable again (or fails them for good when their attempts are used up,
   * or ends them cancelled when a cancel was requested). Returns how many
   * executions it touched.
   */
  readonly recoverExpiredLeases: Effect.Effect<number, StoreError>

  /**
   * Ends the leases `workerId` holds on `ids` as if it had died (see
   * recoverExpiredLeases): for executions whose outcome it gave up writing,
   * or whose handlers it stopped when it could not renew its lease. Returns
   * how many executions it touched.
   */
  readonly abandon: (workerId: string, ids: ReadonlyArray<string>) => Effect.Effect<number, StoreError>

  /**
   * Forgets a worker that stopped with nothing leased to it, unless it has
   * an offer standing or invokes dispatched to it more than the `dispatched`
   * it accounts for: then it is left to expire.
   */
  readonly retireWorker: (workerId: string, dispatched: number) => Effect.Effect<void, StoreError>

  /** Whether claims' offers are taken up: invokes may lease to idle workers (see ClaimOptions.offer). */
  readonly offers: boolean

  /**
   * Ends the worker's offer (a stopping worker): no invoke dispatches to it
   * once this commits. Returns how many executions invokes dispatched to it
   * in all (0 when its lease is gone).
   */
  readonly withdrawOffer: (workerId: string) => Effect.Effect<number, StoreError>

  /**
   * Puts `slots` freed since the worker's standing offer was made back on it
   * (nothing when no offer stands: a claim came back full since, or the
   * offer was withdrawn or lapsed).
   */
  readonly reoffer: (workerId: string, slots: number) => Effect.Effect<void, StoreError>

  /**
   * Moves due scheduled and waiting executions to pending (a bounded batch)
   * and signals their queues. Returns the earliest run_at of the scheduled
   * and waiting executions it left (in the past for a due one it could not
   * take, being locked by another statement), if any, and whether more may be
   * due right now.
   */
  readonly promoteDue: Effect.Effect<{ readonly next: number | undefined; readonly more: boolean }, StoreError>

  /**
   * Records how long finished executions of these tasks are kept (from their
   * contracts); every move to the history stamps its expiry from this.
   */
  readonly setRetention: (policies: ReadonlyArray<RetentionPolicy>) => Effect.Effect<void, StoreError>

  /**
   * Deletes up to `limit` expired finished executions (oldest expiry first)
   * with their step records; one whose parent is unfinished stays. Returns
   * how many it deleted.
   */
  readonly sweepFinished: (limit: number) => Effect.Effect<number, StoreError>

  /** Cancels an execution (cascading to its unfinished descendants). */
  readonly cancel: (id: string, reason: string) => Effect.Effect<CancelResult, StoreError>

  readonly get: (id: string) => Effect.Effect<ExecutionRow | undefined, StoreError>
  readonly children: (id: string) => Effect.Effect<ReadonlyArray<ExecutionRow>, StoreError>
  readonly outcomes: (ids: ReadonlyArray<string>) => Effect.Effect<ReadonlyArray<Outcome>, StoreError>
  /**
   * For result waiters: marks the unfinished executions of `ids` as awaited
   * (their finish then names them in a `Finished` signal), and returns the
   * outcomes of the finished ones. `busy`: unfinished ids that could not be
   * marked just now (a statement held their row); mark them again shortly.
   * Ids that name nothing are in neither list.
   */
  readonly awaitOutcomes: (ids: ReadonlyArray<string>) => Effect.Effect<{
    readonly outcomes: ReadonlyArray<Outcome>
    readonly busy: ReadonlyArray<string>
  }, StoreError>
  /** The ids that name no execution at all (neither unfinished nor finished). */
  readonly unknownIds: (ids: ReadonlyArray<string>) => Effect.Effect<ReadonlyArray<string>, StoreError>

  // --- durable operations (all fenced by the lease of workerId) ---

  /** The durable-op records of an execution, by name. */
  readonly steps: (executionId: string) => Effect.Effect<ReadonlyArray<StepRecord>, StoreError>
  /**
   * Records steps (first writer wins). Returns, for each input in order, the
   * record that is stored: the input's, or the earlier one a late writer adopts;
   * `CancelRequested` when the execution's cancel was requested and nothing was
   * recorded under that name yet; undefined when the lease was lost.
   */
  readonly recordSteps: (
    workerId: string,
    records: ReadonlyArray<{ readonly executionId: string; readonly record: Omit<StepRecord, "recordedAt"> }>
  ) => Effect.Effect<ReadonlyArray<StepRecord | CancelRequested | undefined>, StoreError>
  /**
   * Starts child executions and records them as steps of their parents
   * (kind "child", value { id, deadline }), once per (parent, step name).
   * Returns what is recorded for each, in order (an earlier record wins);
   * `CancelRequested` when the parent's cancel was requested and nothing was
   * recorded yet (no child starts for a cancelled parent); undefined when the
   * parent's lease was lost.
   */
  readonly startChildren: (
    workerId: string,
    children: ReadonlyArray<NewChild>
  ) => Effect.Effect<ReadonlyArray<ChildRecord | CancelRequested | undefined>, StoreError>

  /** Signals to every process using this store. Subscribe inside a scope. */
  readonly signals: Effect.Effect<PubSub.Subscription<Signal>, never, Scope.Scope>
  /** Sends a Work signal for a queue (folded: a burst costs one notification). */
  readonly signalWork: (queue: string) => Effect.Effect<void>
}

/** The store service. Internal: users pick an implementation with `PgStore.layer` or `MemoryStore.layer`. */
export class Store extends Context.Service<Store, StoreService>()("effect-conductor/internal/Store") {}
