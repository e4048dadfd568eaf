/**
 * Workers claim executions of one queue and run their handlers.
 *
 * @since 0.1.0
 */
import { Cause, Clock, Context, Deferred, Duration, Effect, Exit, Fiber, Layer, PubSub, Queue, Schedule } from "effect"
import type { Scope } from "effect"
import { AttemptTimedOut, InvalidConfig, type StoreError } from "./Errors.ts"
import { Execution } from "./Execution.ts"
import type { AnyTask } from "./Task.ts"
import { makeBatcher } from "./internal/Batcher.ts"
import { decodeJsonExit } from "./internal/codec.ts"
import { type Interpreter, makeInterpreter } from "./internal/Interpreter.ts"
import { warn } from "./internal/log.ts"
import { type RegisteredHandler, Registry } from "./internal/Registry.ts"
import type { AttemptOutcome, CancelRequested, ChildRecord, ClaimedExecution, NewChild, StepRecord } from "./internal/Store.ts"
import { Store } from "./internal/Store.ts"
import { uuid } from "./internal/uuid.ts"
import { validate } from "./internal/worker/config.ts"
import { Fifo } from "./internal/worker/fifo.ts"
import { outcomeOf, type Stop } from "./internal/worker/outcome.ts"

/** Settings of one worker. */
export interface WorkerOptions {
  /** The queue to work. Default `"default"`. */
  readonly queue?: string | undefined
  /** Handlers running at once. Default 10. */
  readonly concurrency?: number | undefined
  /**
   * Claimed executions that may wait in the worker for a free slot, so the
   * next handler starts without a round trip. They are leased (and counted as
   * an attempt) like running ones. Default `concurrency`; 0 claims only for free slots.
   */
  readonly prefetch?: number | undefined
  /** Most executions taken by one claim statement. Default `concurrency + prefetch`. */
  readonly claimBatch?: number | undefined
  /**
   * How long the worker's lease lasts without a claim or heartbeat. It covers
   * every execution the worker holds; once it lapses, any worker recovers
   * them. Default 30 seconds.
   */
  readonly leaseDuration?: Duration.Input | undefined
  /** How often the lease is extended. Default a third of `leaseDuration`. */
  readonly heartbeatInterval?: Duration.Input | undefined
  /**
   * The safety net under LISTEN/NOTIFY and timers: how often the worker
   * claims, promotes due work and recovers dead workers' leases anyway. Default 2 seconds.
   */
  readonly pollInterval?: Duration.Input | undefined
  /** On shutdown, how long running handlers may finish before they are interrupted and released. Default 10 seconds. */
  readonly shutdownGrace?: Duration.Input | undefined
  /** Durable sleeps up to this long are awaited in the worker; longer ones park the execution. Default 1 second. */
  readonly inlineSleep?: Duration.Input | undefined
}

/** A running worker. */
export class Worker extends Context.Service<Worker, {
  readonly id: string
  readonly queue: string
  /** Handlers running right now. */
  readonly running: Effect.Effect<number>
  /**
   * Executions leased to this worker whose outcome is not committed yet:
   * running, waiting in its buffer for a slot, or written back soon.
   */
  readonly held: Effect.Effect<number>
  /**
   * Attempt outcomes this worker has written back (committed) since it started:
   * one per attempt that ended here, completed, failed, retried, suspended,
   * cancelled or released. One for a lease lost by then changed nothing, and
   * counts too.
   */
  readonly committed: Effect.Effect<number>
}>()("effect-conductor/Worker") {
  /**
   * Starts a worker for the layer's lifetime. Closing the layer's scope stops
   * claiming, lets running handlers finish within `shutdownGrace`, then
   * interrupts and releases the rest without using up their attempt.
   */
  static readonly layer = (options: WorkerOptions = {}): Layer.Layer<Worker, InvalidConfig, Store | Registry> =>
    Layer.effect(Worker, make(options))
}

/**
 * A dispatched attempt: its fiber (interrupted to stop it; unset until the
 * fiber starts) and why it was stopped, if it was. A stop that arrives before
 * the fiber starts keeps the handler from running at all.
 */
interface RunControl {
  stop: Stop | undefined
  fiber: Fiber.Fiber<unknown, unknown> | undefined
  /** The claim whose lease this attempt runs under (see `leased`). */
  claim: number
  /** That claim's execution: its attempt number decides a retry. */
  claimed: ClaimedExecution
  /** The attempt's `Execution` service, as the handler sees it. */
  readonly execution: AttemptExecution
  /**
   * The execution taken again by a later claim while this attempt was being
   * stopped: started once this one ends without an outcome of its own.
   */
  next: ClaimedExecution | undefined
}

/**
 * The `Execution` service of one attempt. Its abort signal and interpreter are
 * created on first use: most handlers never look at them.
 */
class AttemptExecution implements Context.Service.Shape<typeof Execution> {
  readonly id: string
  readonly task: string
  /** The claim's attempt number; a later claim this attempt carries on under changes it (see adopt). */
  attempt: number
  readonly maxAttempts: number
  readonly parentId: string | undefined
  /** Created when the handler first reads `signal`; aborted when the attempt ends. */
  abort: AbortController | undefined
  private interpreter: Interpreter | undefined
  private readonly claimed: ClaimedExecution
  private readonly makeOps: (execution: AttemptExecution) => Interpreter
  constructor(claimed: ClaimedExecution, makeOps: (execution: AttemptExecution) => Interpreter) {
    this.claimed = claimed
    this.makeOps = makeOps
    this.id = claimed.id
    this.task = claimed.task
    this.attempt = claimed.attempt
    this.maxAttempts = claimed.maxAttempts
    this.parentId = claimed.parentId
  }
  get signal(): AbortSignal {
    this.abort ??= new AbortController()
    return this.abort.signal
  }
  get ops(): Interpreter {
    return this.interpreter ??= this.makeOps(this)
  }
  /** The execution's first claim: it has no recorded steps yet. */
  get fresh(): boolean {
    return this.claimed.fresh
  }
  /** Goes on as the attempt a later claim of the same execution counted (see claimedAgain). */
  adopt(claimed: ClaimedExecution): void {
    this.attempt = claimed.attempt
  }
  /** Whether the execution may have step records: from an earlier attempt, or from this one's durable operations. */
  get mayHaveSteps(): boolean {
    return !this.claimed.fresh || this.interpreter !== undefined
  }
}

/** How a completion the store may delete says whether it may have step records (shared: they never change). */
const discardWithSteps = { steps: true } as const
const discardWithoutSteps = { steps: false } as const
/** Exchange statements a worker keeps in flight at most (see the exchange loop). */
const exchanges = 2
/** Handlers that end at once, started one inside another, before the next starts on the next tick (see dispatch). */
const maxChainDepth = 100
/** Ids of orphans given back that a worker remembers, to drop a dispatch signal for one that arrives late. */
const maxGivenBack = 10_000
/** Claims in a row that may start after the previous one's last execution (see claimNext). */
const maxCursorClaims = 8
/** How soon a due execution that was locked during promotion is looked at again. */
const skippedRetryMillis = 20
/** How often a worker deletes expired finished executions (see `Task.Retention`), and how many per statement. */
const sweepIntervalMillis = 60_000
const sweepBatch = 1000

const make = (options: WorkerOptions): Effect.Effect<Worker["Service"], InvalidConfig, Store | Registry | Scope.Scope> =>
  Effect.gen(function*() {
    const config = yield* validate(options)
    const store = yield* Store
    const registry = yield* Registry
    const workerId = uuid()
    const { queue } = config

    // --- the store's clock, read locally ---------------------------------
    let offset = 0
    const storeNow = Effect.map(Clock.currentTimeMillis, (now) => Math.round(now + offset))
    const refreshOffset = Effect.gen(function*() {
      const before = yield* Clock.currentTimeMillis
      const remote = yield* store.now
      const after = yield* Clock.currentTimeMillis
      offset = remote - (before + after) / 2
    })

    // --- state -------------------------------------------------------------
    const runs = new Map<string, RunControl>()
    /**
     * Leases held (handler running or buffered, or outcome not yet committed),
     * each with the number of the claim that took it: a heartbeat answer about
     * an earlier claim of the same id must not stop a later one.
     */
    const leased = new Map<string, number>()
    /** Outcomes written (Worker.committed). */
    let committed = 0
    let claims = 0
    let free = config.concurrency
    /** Claimed, leased, waiting for a slot (FIFO, in claim order). */
    const buffered = new Fifo<ClaimedExecution>()
    let backlog = false
    let stopping = false
    /**
     * Leases this worker gave up without writing an outcome (a write that kept
     * failing, handlers stopped when the lease could not be renewed), each
     * with the number of the claim that took it: ended once the worker holds
     * them no more, by the next heartbeat that gets through, as a dead
     * worker's would be.
     */
    const abandoned = new Map<string, number>()
    /** A failed claim's orphans could not be looked for yet: the heartbeat tries again. */
    let orphansUnchecked = false
    /** Handlers left running at shutdown keep their leases until the worker's expires. */
    let leftBehind = false
    /** The worker's lease was removed at shutdown. */
    let retired = false
    /**
     * A claim offered slots: a store that `offers` may lease new executions
     * to this worker straight from their invokes, for `offerMillis` after its
     * last claim that came back short (see `received`). Withdrawn at shutdown.
     */
    let offered = false
    /** Each poll claims, which renews the offer: it lasts two. */
    const offerMillis = 2 * config.pollMillis
    /** The slots the standing offer was made with (by a claim that came back short); 0: none stands. */
    let offerStanding = 0
    /**
     * Slots freed since the standing offer was made and not taken by the
     * buffer. Once they reach half the offer they go back on it
     * (`store.reoffer`): each dispatch uses up a slot of the offer, and
     * without this an idle worker handed one invoke after another would run
     * out of them until its next claim.
     */
    let credits = 0
    /** Credits sent and not yet known to be committed: a claim leaves them out of its own offer. */
    let creditsInFlight = 0
    /**
     * Executions given back as orphans that may have been dispatched to this
     * worker: their `Dispatched` signal, if it comes after all, is dropped.
     */
    const givenBack = new Set<string>()
    /** Set when the signal connection came back: look for orphans once the claim in flight ends. */
    let orphansAfterClaim = false
    /**
     * `Dispatched` signals this worker has taken in, against the count of
     * dispatches its heartbeats read back (see heartbeat): a NOTIFY that never
     * arrives (a listener connection that died without a word) shows there.
     */
    let dispatchesReceived = 0
    /** The count a heartbeat read ahead of `dispatchesReceived`: behind it still at the next one, they were lost. */
    let dispatchesDue: number | undefined
    /** What the next look for orphans accounts for (every dispatch before it is then received or given back). */
    let dispatchesCovered = 0
    /**
     * Dispatches were lost with the listener up (as far as the store knew):
     * its connection may be dead without a word. No more offers until it is
     * in place again (the next Reconnected); claims carry on.
     */
    let offersSuspended = false
    /** Handlers left running at shutdown: their executions are no orphans. */
    const leftRunning = new Set<string>()
    const wakeups = yield* Queue.sliding<void>(1)
    /** Done once the first claim is back, or the worker found nothing to claim (see start-up). */
    const firstClaimed = Deferred.makeUnsafe<void>()
    const startPeriodic = Effect.sync(() => Deferred.doneUnsafe(firstClaimed, Effect.void))
    /** Done once the queue's retention is recorded (or could not be): outcome writes wait for it. */
    const retentionRecorded = Deferred.makeUnsafe<void>()

    const stop = (id: string, reason: Stop): Effect.Effect<void> =>
      Effect.suspend(() => {
        const control = runs.get(id)
        if (control === undefined) return dropBuffered(id, reason)
        if (control.stop !== undefined) {
          // A cancel that arrives while the attempt is being suspended or
          // released wins: the execution must end, not go back.
          if (reason._tag === "Cancel" && (control.stop._tag === "Suspend" || control.stop._tag === "Shutdown")) {
            control.stop = reason
          }
          return Effect.void
        }
        control.stop = reason
        return control.fiber === undefined ? Effect.void : Effect.asVoid(Effect.forkDetach(Fiber.interrupt(control.fiber)))
      })

    /** A stop for an execution still waiting for a slot: it never starts. */
    const dropBuffered = (id: string, reason: Stop): Effect.Effect<void> =>
      Effect.suspend(() => {
        const index = buffered.findIndex((e) => e.id === id)
        if (index < 0) return Effect.void
        buffered.removeAt(index)
        const outcome: AttemptOutcome | undefined = reason._tag === "Cancel"
          ? { _tag: "Cancelled", id, reason: reason.reason }
          : reason._tag === "Lost"
          ? undefined
          : { _tag: "Released", id }
        if (outcome === undefined) {
          release(id)
          return Effect.void
        }
        return finish(outcome)
      })

    // --- timers: wake at the earliest known due time ------------------------
    let armed: number | undefined
    const rearm = yield* Queue.sliding<void>(1)
    const armUnsafe = (at: number) => {
      if (armed !== undefined && armed <= at) return
      armed = at
      Queue.offerUnsafe(rearm, undefined)
    }
    const arm = (at: number) => Effect.sync(() => armUnsafe(at))
    const promote = Effect.gen(function*() {
      while (true) {
        const { more, next } = yield* store.promoteDue
        if (more) continue
        if (next !== undefined) {
          // A due execution the store could not take (another statement held
          // it) is looked at again shortly, not at once: the lock may last.
          const now = yield* storeNow
          yield* arm(next > now ? next : now + skippedRetryMillis)
        }
        return
      }
    }).pipe(Effect.catch(warn("promoting due work")))

    // --- batched writes (group commit) ---------------------------------------
    const retryWrites = Schedule.exponential("20 millis").pipe(Schedule.upTo({ duration: Duration.millis(config.leaseMillis) }))
    /** Outcomes waiting to be written: an exchange loop below writes them all in one statement. */
    const outcomes: Array<AttemptOutcome> = []
    const finish = (outcome: AttemptOutcome) => Effect.sync(() => offerOutcome(outcome))
    /** Hands an outcome to the exchange loops; its lease is released once it is written. */
    const offerOutcome = (outcome: AttemptOutcome) => {
      // Only the first outcome of a batch wakes a loop: the loop takes all
      // that are waiting when it runs, and looks again after each statement.
      if (outcomes.push(outcome) === 1) Queue.offerUnsafe(wakeups, undefined)
    }
    const recordStep = (yield* makeBatcher(
      (items: ReadonlyArray<{ readonly executionId: string; readonly record: Omit<StepRecord, "recordedAt"> }>) =>
        store.recordSteps(workerId, items),
      { maxBatch: 500 }
    )).submit
    const startChild = (yield* makeBatcher(
      (children: ReadonlyArray<NewChild>) => store.startChildren(workerId, children),
      { maxBatch: 500 }
    )).submit

    // --- one attempt -------------------------------------------------------
    /** The interpreter of one attempt's durable operations. */
    const interpreterFor = (execution: AttemptExecution) =>
      makeInterpreter({
        executionId: execution.id,
        // Read at each record: an attempt that carries on under a later claim records that claim's number.
        get attempt() {
          return execution.attempt
        },
        fresh: execution.fresh,
        store,
        recordStep: (record) => recordStep({ executionId: execution.id, record }),
        startChild: (child): Effect.Effect<ChildRecord | CancelRequested | undefined, StoreError> => startChild(child),
        now: storeNow,
        inlineSleepMillis: config.inlineSleepMillis,
        suspend: (until) => stop(execution.id, { _tag: "Suspend", until }),
        leaseLost: Effect.andThen(stop(execution.id, { _tag: "Lost" }), Effect.never),
        cancelled: (reason) => Effect.andThen(stop(execution.id, { _tag: "Cancel", reason }), Effect.never)
      })
    /**
     * The services a handler runs with: this worker's, then those of the layer
     * that registered it. Merged once per registration, so an attempt only adds
     * its `Execution` on top.
     */
    const workerContext = yield* Effect.context<never>()
    const handlerContexts = new WeakMap<RegisteredHandler, Context.Context<never>>()
    const contextOf = (handler: RegisteredHandler) => {
      let context = handlerContexts.get(handler)
      if (context === undefined) {
        context = Context.merge(workerContext, handler.context)
        handlerContexts.set(handler, context)
      }
      return context
    }

    /** The handler's effect for one attempt, under the task's timeout. */
    const attempt = (claimed: ClaimedExecution, registered: RegisteredHandler, payload: unknown) => {
      const task = registered.task
      let effect = registered.handler(payload)
      if (task.timeout !== undefined) {
        const timeoutMillis = Duration.toMillis(task.timeout)
        effect = Effect.timeoutOrElse(effect, {
          duration: task.timeout,
          orElse: () =>
            Effect.die(new AttemptTimedOut({
              task: task.name,
              timeoutMillis,
              message: `Attempt ${claimed.attempt} of ${task.name} ${claimed.id} timed out after ${timeoutMillis} ms`
            }))
        })
      }
      return effect
    }

    /**
     * One attempt's fiber: the handler, interruptible (stop() interrupts the
     * fiber). One stopped before its fiber ran (it may start a tick late, see
     * dispatch) never runs the handler.
     */
    const run = (control: RunControl, registered: RegisteredHandler, payload: unknown) =>
      Effect.withFiber((fiber) => {
        control.fiber = fiber
        return control.stop === undefined ? attempt(control.claimed, registered, payload) : Effect.interrupt
      })

    /**
     * Starts one attempt in a fiber of its own whose services are the
     * handler's plus the attempt's `Execution`. Attempts are tracked in `runs`
     * (a stop interrupts the fiber; shutdown waits for `runs` to empty), so no
     * fiber set is needed. The fiber runs the handler alone: its exit is
     * turned into the outcome by `ended`, outside it, so nothing after the
     * handler can be interrupted. `later`: start on the next tick instead of now.
     */
    const start = (claimed: ClaimedExecution, later: boolean) => {
      // In `runs` from now on, so stops and shutdown see it before its fiber starts.
      const execution = new AttemptExecution(claimed, interpreterFor)
      const control: RunControl = {
        stop: undefined,
        fiber: undefined,
        claim: leased.get(claimed.id) ?? claims,
        claimed,
        execution,
        next: undefined
      }
      runs.set(claimed.id, control)
      const registered = registry.get(claimed.task)!
      const task = registered.task
      const decoded = decodeJsonExit(task.codecs.payload, claimed.payload)
      if (Exit.isFailure(decoded)) {
        // A stored payload that no longer decodes fails for good, once.
        return settle(control, {
          _tag: "Failed",
          id: claimed.id,
          error: {
            _tag: "Defect",
            message: `The stored payload of ${task.name} ${claimed.id} no longer decodes: ${Cause.pretty(decoded.cause)}`
          },
          retryDelayMillis: undefined
        })
      }
      const effect = run(control, registered, decoded.value)
      const fiber = Effect.runForkWith(Context.add(contextOf(registered), Execution, execution))(
        later ? Effect.andThen(Effect.yieldNow, effect) : effect
      )
      // Called at once when the handler has already ended.
      fiber.addObserver((exit) => ended(control, task, exit))
    }

    /** The attempt's fiber has ended: its outcome, then settle. */
    const ended = (control: RunControl, task: AnyTask, exit: Exit.Exit<unknown, unknown>) => {
      const execution = control.execution
      execution.abort?.abort()
      // A task that keeps no completed executions: its store may delete this one outright.
      const discard = task.retention.completedMillis !== 0
        ? undefined
        : execution.mayHaveSteps
        ? discardWithSteps
        : discardWithoutSteps
      settle(control, outcomeOf(control.claimed, task, exit, control.stop, discard))
    }

    /** After the handler: free the slot, start what waits for it, hand the outcome to the exchange loop. */
    const settle = (control: RunControl, outcome: AttemptOutcome | undefined): void => {
      const id = control.claimed.id
      if (runs.get(id) === control) runs.delete(id)
      free++
      // A slot that stays free (not taken by the buffer, nor by this execution claimed again).
      if (offerStanding > 0 && buffered.length === 0 && control.next === undefined && !stopping && !offersSuspended) credits++
      if (stopping && runs.size === 0) Deferred.doneUnsafe(runsEnded, Effect.void)
      if (backlog && !stopping && buffered.length < config.concurrency) wantMore()
      if (outcome === undefined && control.next !== undefined) {
        if (!stopping) {
          buffered.unshift(control.next)
          return dispatchUnsafe()
        }
        outcome = { _tag: "Released", id }
      }
      if (outcome === undefined) {
        release(id, control.claim)
        return dispatchUnsafe()
      }
      offerOutcome(outcome)
      if (outcome._tag === "Suspended" && outcome.until !== undefined) armUnsafe(outcome.until)
      if (outcome._tag === "Failed" && outcome.retryDelayMillis !== undefined) {
        const delay = outcome.retryDelayMillis
        Effect.runForkWith(workerContext)(Effect.flatMap(storeNow, (now) => arm(now + delay)))
      }
      dispatchUnsafe()
    }

    /**
     * Forgets a lease (only the one `claim` took, when given: the execution
     * may have been claimed again since); at shutdown, the last one lets the
     * worker finish.
     */
    const release = (id: string, claim?: number) => {
      if (claim !== undefined && leased.get(id) !== claim) return
      leased.delete(id)
      if (stopping && leased.size === 0) Deferred.doneUnsafe(drained, Effect.void)
    }
    const drained = yield* Deferred.make<void>()
    /** Resolved at shutdown when the last running handler has ended. */
    const runsEnded = yield* Deferred.make<void>()

    // --- claiming ----------------------------------------------------------
    /** Starts buffered executions while slots are free. */
    const dispatchUnsafe = () => {
      // A handler that finishes at once starts the next one as its fiber
      // ends (see ended), so a whole buffer can run in one synchronous
      // stretch. Once half a batch of outcomes waits, new fibers start on the
      // next tick instead: an exchange loop gets to send those outcomes (and
      // claim more) while the rest of the buffer runs. That stretch is a
      // chain of nested calls (each fiber starts the next inside its own run), so past
      // `maxChainDepth` links the next fiber starts on the next tick too: a
      // claim of a few thousand overflowed the stack.
      chainDepth++
      try {
        while (free > 0 && buffered.length > 0 && !stopping) {
          free--
          start(buffered.shift()!, outcomes.length >= flushAt || chainDepth >= maxChainDepth)
        }
      } finally {
        chainDepth--
      }
    }
    const dispatch: Effect.Effect<void> = Effect.sync(dispatchUnsafe)
    /** Nested dispatches on the stack now (see dispatch). */
    let chainDepth = 0
    const capacity = config.concurrency + config.prefetch
    /** Outcomes waiting that make dispatch yield to the exchange loops (see dispatch). */
    const flushAt = Math.max(1, Math.ceil(Math.min(capacity, config.claimBatch) / 2))
    /**
     * Set by anything that may mean claimable work; cleared by a claim that
     * came back short, unless more was announced while that claim ran.
     */
    let wanted = true
    let wantedSeq = 0
    /** Claimable work may be waiting: a signal, a registration, executions given back. */
    const want = () => {
      announced++
      wantMore()
    }
    /** Room for more during a backlog: the queue is read on from where the last claim ended. */
    const wantMore = () => {
      wanted = true
      wantedSeq++
      Queue.offerUnsafe(wakeups, undefined)
    }
    /** Counts `want`: work that may lie before the cursor (see claimNext). */
    let announced = 0
    /**
     * The last execution of the last claim, when it came back full, and
     * `announced` when that claim was sent: the next claim may start after it
     * (ClaimOptions.after) if nothing was announced since.
     */
    let cursor: { readonly after: string; readonly announced: number } | undefined
    /** Claims in a row that started after a cursor. */
    let cursorClaims = 0
    /**
     * A claim is in flight: claims go one at a time, so they come back in
     * claim order. Also taken while given-up leases are settled (see
     * settleGivenUp).
     */
    let claiming = false
    /** Resolved when `claiming` is next cleared (shutdown waits on it). */
    let claimEnded: Deferred.Deferred<void> | undefined
    const endClaim = () => {
      claiming = false
      if (claimEnded !== undefined) Deferred.doneUnsafe(claimEnded, Effect.void)
      claimEnded = undefined
    }
    /**
     * The exchange loop. Each turn sends one statement: the next claim, when
     * there is room, work may be waiting and no other claim is in flight;
     * otherwise every outcome waiting (group commit). `exchanges` copies of it
     * run, so a claim and a write of outcomes are in flight at once, each on a
     * connection of its own: Postgres works on both at the same time (on
     * separate cores) while the handlers run the previous batch. In one
     * statement, a write of 400 outcomes and a claim of 800 ran one after the
     * other on one backend (and the claim then waited for the outcomes' WAL
     * flush); apart, one worker process drained W1 10–25% faster.
     */
    const exchangeLoop = Effect.gen(function*() {
      while (true) {
        yield* Queue.take(wakeups)
        // Let other handlers that just finished hand in their outcomes first
        // (a wake-up for new work alone goes straight to its claim).
        if (outcomes.length > 0) yield* Effect.yieldNow
        while (true) {
          // Outcomes not yet sent still hold their lease and their memory.
          const room = capacity - (config.concurrency - free) - buffered.length - outcomes.length
          // Before the first claim, and after one that came back short (the
          // queue looked empty), ask only for the free slots: a small claim
          // comes back sooner, so handlers start sooner (a fresh worker's
          // first claim of 1600 took 60 ms), and if it comes back full the
          // next claim, for the rest of the room, goes out while they run.
          const limit = Math.min(room, config.claimBatch, !backlog && free > 0 ? free : room)
          const tasks = stopping || !wanted || claiming || limit <= 0 ? [] : registry.tasksOfQueue(queue)
          if (tasks.length > 0) {
            // Taken here, where it was checked: settleGivenUp takes it too.
            claiming = true
            // Another loop writes the outcomes meanwhile.
            if (outcomes.length > 0) Queue.offerUnsafe(wakeups, undefined)
            yield* claimNext(tasks, limit)
          } else if (outcomes.length > 0) {
            yield* writeOutcomes(outcomes.splice(0, 1000))
          } else {
            // Nothing to claim (no handler yet, say): the periodic statements need not wait.
            if (!claiming) yield* startPeriodic
            break
          }
        }
      }
    })
    const claimNext = (tasks: ReadonlyArray<string>, limit: number) =>
      Effect.gen(function*() {
        const seq = wantedSeq
        // Slots free now and not promised to the buffer: offered if the claim
        // comes back short. The freed slots not yet given back are among them;
        // those given back and maybe not yet committed are left out (were they
        // committed after this claim, they would count twice).
        credits = 0
        const offer = store.offers && !offersSuspended ? Math.max(0, free - buffered.length - creditsInFlight) : 0
        if (offer > 0) offered = true
        // After a full claim, start where it ended: the rows it took are
        // still at the head of the claim index, running. Not after any sign
        // of work that may lie before that point, and not more than
        // `maxCursorClaims` times in a row, so a row passed over because it
        // was locked is not left behind for long.
        const after = cursor !== undefined && cursor.announced === announced && cursorClaims < maxCursorClaims
          ? cursor.after
          : undefined
        cursorClaims = after === undefined ? 0 : cursorClaims + 1
        const announcedAtClaim = announced
        cursor = undefined
        let failed = false
        const claimed = yield* store.claim({
          queue,
          tasks,
          limit,
          workerId,
          leaseMillis: config.leaseMillis,
          offer,
          offerMillis,
          received: dispatchesReceived,
          after
        }).pipe(
          Effect.ensuring(startPeriodic),
          Effect.catch((error) => {
            failed = true
            return Effect.as(Effect.andThen(warn("claim")(error), giveBackOrphans), [])
          })
        )
        backlog = claimed.length === limit
        if (backlog) cursor = { after: claimed[claimed.length - 1]!.id, announced: announcedAtClaim }
        // As the claim function decides: an offer stands when the claim came
        // back short with slots left over (migrations/0011); any other claim
        // ended it (0012).
        offerStanding = failed || backlog || claimed.length >= offer ? 0 : offer
        if (offerStanding === 0) credits = 0
        wanted = backlog || wantedSeq !== seq
        claims++
        for (const execution of claimed) {
          const earlier = leased.get(execution.id)
          leased.set(execution.id, claims)
          // Claimed while shutdown began: give it straight back.
          if (stopping) offerOutcome({ _tag: "Released", id: execution.id })
          else if (earlier === undefined || !claimedAgain(execution)) buffered.push(execution)
        }
        // Cleared once its executions are in the buffer, where the next claim counts them.
        endClaim()
        if (orphansAfterClaim) {
          orphansAfterClaim = false
          yield* Effect.forkChild(settleGivenUp)
        }
        // A full claim is followed at once by another (when there is room):
        // start these after this loop has sent it, so Postgres works on that
        // claim while they run (a one-process drain ran 6–11% faster than
        // starting them first). A short one, the usual answer to a wake-up,
        // starts them now.
        if (backlog) yield* Effect.forkChild(dispatch)
        else yield* dispatch
      })
    const writeOutcomes = (batch: ReadonlyArray<AttemptOutcome>) =>
      Effect.gen(function*() {
        yield* Deferred.await(retentionRecorded)
        // The leases these outcomes end: a claim that takes one of them again
        // meanwhile (see claimedAgain) keeps its own.
        const leases = batch.map((outcome) => leased.get(outcome.id))
        yield* store.finish(workerId, batch).pipe(
          Effect.retry(retryWrites),
          Effect.andThen(Effect.sync(() => {
            committed += batch.length
          })),
          Effect.catch((error) =>
            Effect.andThen(
              warn(`writing ${batch.length} outcome(s) (their leases are given up)`)(error),
              Effect.sync(() => batch.forEach((outcome, i) => abandoned.set(outcome.id, leases[i] ?? claims)))
            )
          )
        )
        batch.forEach((outcome, i) => release(outcome.id, leases[i]))
        if (offerStanding > 0 && credits > 0 && credits >= offerStanding / 2 && !stopping && !offersSuspended) {
          const slots = credits
          credits = 0
          creditsInFlight += slots
          // Apart: it may wait for the row a claim holds, and outcomes need not.
          // Lost, it only leaves the offer smaller until the next claim.
          yield* Effect.forkChild(store.reoffer(workerId, slots).pipe(
            Effect.catch((error) => Effect.logDebug(`effect-conductor: giving back ${slots} slot(s) to the offer failed`, error)),
            Effect.ensuring(Effect.sync(() => (creditsInFlight -= slots)))
          ))
        }
      })
    /**
     * An execution this worker still holds under an earlier claim, taken
     * again: its lease lapsed unnoticed (an event loop stalled past it, say),
     * lease recovery put it back, and this worker's next claim took it.
     * Starting it again would run it twice at once, and both outcomes would
     * pass the fence (same worker). Instead, what this worker has of it
     * carries on under the new lease: an attempt still running ends it, as
     * the attempt the claim counted (one being stopped for a lost lease is
     * started again once it has ended), an outcome not yet sent is written
     * under it, a buffered claim of it is replaced. True when so; false when
     * its outcome is being written already (which lands first is unknown):
     * then it starts again, and the later outcome is fenced off.
     */
    const claimedAgain = (execution: ClaimedExecution): boolean => {
      const running = runs.get(execution.id)
      if (running !== undefined) {
        running.claim = claims
        running.claimed = execution
        running.execution.adopt(execution)
        if (running.stop !== undefined) running.next = execution
        return true
      }
      if (outcomes.some((outcome) => outcome.id === execution.id)) return true
      const index = buffered.findIndex((e) => e.id === execution.id)
      if (index < 0) return false
      buffered.set(index, execution)
      return true
    }
    /**
     * After a failed claim (still marked in flight, so no other claim runs):
     * the claim may have committed with its reply lost. Likewise after the
     * signal connection was lost, and at shutdown when an offer was taken up
     * unseen: an invoke may have dispatched executions to this worker whose
     * NOTIFY it never got. Whatever is leased to this worker but unknown to
     * it goes back at once, its attempt given back, instead of waiting for
     * its lease to expire. What it gave up is known to it: those leases end
     * as expired ones (see settleGivenUp), the attempt used. (Counted as
     * orphans, an attempt interrupted when the database was out of reach,
     * during a claim that failed, was given back and ran again as the same
     * attempt.)
     */
    const lookForOrphans = Effect.gen(function*() {
      orphansUnchecked = true
      const covered = dispatchesCovered
      const found = yield* store.orphans(workerId, [...leased.keys(), ...abandoned.keys(), ...leftRunning])
      // Dispatched to this worker while the look ran, and started: not orphans.
      const orphans = found.filter((id) => !leased.has(id))
      for (const id of orphans) givenBack.add(id)
      // Most never get a late signal (a claim's orphans): forget the oldest.
      for (const id of givenBack) {
        if (givenBack.size <= maxGivenBack) break
        givenBack.delete(id)
      }
      dispatchesReceived = Math.max(dispatchesReceived, covered)
      if (orphans.length > 0) {
        yield* store.finish(workerId, orphans.map((id): AttemptOutcome => ({ _tag: "Released", id })))
        yield* Effect.logWarning(
          `effect-conductor: gave back ${orphans.length} execution(s) leased to this worker that never reached it (a claim whose reply was lost, or an invoke's dispatch whose NOTIFY was)`
        )
      }
      orphansUnchecked = false
    })
    const giveBackOrphans = lookForOrphans.pipe(
      Effect.retry(retryWrites),
      Effect.catch(warn("giving back what a failed claim may have taken (the heartbeat tries again)"))
    )

    /** Claimable work may be waiting: claim on the next turn. */
    const wake = Effect.sync(want)

    /**
     * An execution an invoke leased to this worker on one of its offered
     * slots (attempt 1 counted): it joins the buffer as a claimed one would.
     */
    const received = (execution: ClaimedExecution): Effect.Effect<void> =>
      Effect.suspend(() => {
        // Given back as an orphan before this signal arrived (see lookForOrphans).
        if (givenBack.delete(execution.id) || leased.has(execution.id)) return Effect.void
        // Dispatched while shutdown began: give it straight back. Counted once
        // given back: until then the look for orphans at shutdown covers it.
        if (stopping) {
          return store.finish(workerId, [{ _tag: "Released", id: execution.id }]).pipe(
            Effect.andThen(Effect.sync(() => dispatchesReceived++)),
            Effect.catch((error) =>
              Effect.andThen(Effect.sync(() => (orphansUnchecked = true)), warn("giving back an execution dispatched during shutdown")(error))
            )
          )
        }
        dispatchesReceived++
        leased.set(execution.id, claims)
        buffered.push(execution)
        return dispatch
      })

    /**
     * Ends this worker's offer (at shutdown). What was dispatched to it and
     * never reached it is looked for before its row goes. The row goes only
     * if no offer stands and its count of dispatches is what the worker
     * accounts for (see retireWorker); otherwise it is left to expire.
     */
    const withdraw = store.withdrawOffer(workerId).pipe(
      Effect.timeoutOrElse({ duration: Duration.millis(config.leaseMillis), orElse: () => Effect.fail("timed out") }),
      Effect.tap((dispatched) => Effect.sync(() => {
        if (dispatched > dispatchesReceived) {
          orphansUnchecked = true
          dispatchesCovered = Math.max(dispatchesCovered, dispatched)
        }
      })),
      Effect.catch((error) => Effect.andThen(Effect.sync(() => (orphansUnchecked = true)), warn("withdrawing the worker's offer")(error)))
    )

    // --- heartbeats: extend leases, notice lost ones and cancel requests ----
    /** When the last successful heartbeat was sent: leases are good until then + leaseDuration. */
    let lastHeartbeat = yield* Clock.currentTimeMillis
    const heartbeat = Effect.gen(function*() {
      // Retired at shutdown: a heartbeat now would bring the lease back.
      if (retired) return
      const held = new Map(leased)
      const ids = [...held.keys()]
      // Each was counted before this heartbeat reads the count.
      const receivedBefore = dispatchesReceived
      const sent = yield* Clock.currentTimeMillis
      // A hung connection must not hold this up: a heartbeat that takes longer
      // than its interval counts as failed.
      const result = yield* Effect.exit(
        Effect.timeoutOrElse(store.heartbeat(workerId, ids, config.leaseMillis), {
          duration: Duration.millis(config.heartbeatMillis),
          orElse: () => Effect.fail("timed out")
        })
      )
      const now = yield* Clock.currentTimeMillis
      if (Exit.isSuccess(result)) {
        lastHeartbeat = sent
        for (const id of result.value.lost) {
          if (leased.get(id) === held.get(id)) yield* stop(id, { _tag: "Lost" })
        }
        for (const { id, reason } of result.value.cancelRequested) yield* stop(id, { _tag: "Cancel", reason })
        // Dispatches counted a heartbeat ago and still not all received: their
        // NOTIFYs were lost. What they leased to this worker goes back.
        if (dispatchesDue !== undefined && dispatchesReceived < dispatchesDue) {
          orphansUnchecked = true
          dispatchesCovered = Math.max(dispatchesCovered, dispatchesDue)
          offersSuspended = true
          yield* Effect.logWarning("effect-conductor: executions dispatched to this worker never arrived; it takes no more until its listener reconnects")
        }
        if (result.value.dispatched < receivedBefore) {
          // The worker's row was made anew (a lease recovery took the old one):
          // its count starts again. Look once more, and count from there.
          dispatchesReceived = 0
          dispatchesCovered = 0
        }
        dispatchesDue = result.value.dispatched > dispatchesReceived ? result.value.dispatched : undefined
        // Apart, so a slow one (a scan for orphans) does not hold up the next heartbeat.
        yield* Effect.forkChild(settleGivenUp)
      } else if (now - lastHeartbeat >= config.leaseMillis - config.heartbeatMillis) {
        // Our lease expires before another heartbeat could land: stop
        // everything we hold before another worker takes it over.
        yield* Effect.logWarning(`effect-conductor: the lease could not be renewed for ${now - lastHeartbeat} ms; interrupting handlers`)
        for (const id of [...runs.keys(), ...buffered.map((e) => e.id)]) {
          abandoned.set(id, leased.get(id) ?? claims)
          yield* stop(id, { _tag: "Lost" })
        }
      }
    })
    /**
     * What the worker gave up may still be leased to it, and its lease is
     * alive again: end those leases now (as expired ones), and look for a
     * failed claim's orphans. Done as the only claim in flight: every claim
     * that committed has then put what it took in `leased`, so no claim
     * meanwhile looks like an orphan, and an execution given up and claimed
     * again since is not given up twice.
     */
    const settleGivenUp = Effect.suspend(() => {
      if ((abandoned.size === 0 && !orphansUnchecked) || claiming) return Effect.void
      claiming = true
      return Effect.gen(function*() {
        // Still held (a handler that has not stopped yet): next time.
        // Held under a later claim: that lease is not given up.
        const given = [...abandoned].filter(([id, claim]) => {
          const holding = leased.get(id)
          if (holding !== undefined && holding !== claim) abandoned.delete(id)
          return holding === undefined
        }).map(([id]) => id)
        if (given.length > 0) yield* store.abandon(workerId, given)
        for (const id of given) abandoned.delete(id)
        if (orphansUnchecked) yield* lookForOrphans
      }).pipe(
        Effect.catch(warn("ending given-up leases")),
        Effect.ensuring(Effect.sync(() => {
          endClaim()
          // A claim may have been put off meanwhile.
          want()
        }))
      )
    })

    // --- signals: work, cancel requests, due-time changes -----------------
    const subscription = yield* store.signals
    const onSignals = Effect.gen(function*() {
      while (true) {
        const signal = yield* PubSub.take(subscription)
        switch (signal._tag) {
          case "Work":
            if (signal.queue === queue) yield* wake
            break
          case "Cancel":
            for (const id of signal.ids) yield* stop(id, { _tag: "Cancel", reason: "cancelled" })
            break
          // Promotion runs on the timer fiber, so signals never queue behind it.
          case "Scheduled":
            yield* Effect.flatMap(storeNow, arm)
            break
          case "Reconnected":
            offersSuspended = false
            // Executions dispatched while the listener was down never
            // arrived: give them back (they are leased to this worker).
            if (signal.afterLoss && offered) {
              orphansUnchecked = true
              // Not while a claim is in flight (see settleGivenUp): then after it.
              orphansAfterClaim = true
              yield* Effect.forkChild(settleGivenUp)
            }
            yield* Effect.flatMap(storeNow, arm)
            yield* wake
            break
          case "Dispatched":
            if (signal.workerId === workerId) yield* received(signal.execution)
            break
        }
      }
    })

    const timer = Effect.gen(function*() {
      while (true) {
        if (armed === undefined) {
          yield* Queue.take(rearm)
          continue
        }
        const delay = armed - (yield* storeNow)
        if (delay > 0) {
          yield* Effect.raceFirst(Effect.sleep(Duration.millis(delay)), Queue.take(rearm))
          continue
        }
        armed = undefined
        yield* promote
      }
    })

    // --- retention: record this queue's policies, delete what expired ------
    const retentionOfQueue = Effect.suspend(() =>
      store.setRetention(registry.tasksOfQueue(queue).map((name) => {
        const { retention } = registry.get(name)!.task
        return { task: name, completedMillis: retention.completedMillis, failedMillis: retention.failedMillis }
      }))
    )
    /** A handler registered after the worker started: its retention is recorded on the next sweep. */
    let retentionChanged = false
    const sweep = Effect.gen(function*() {
      if (retentionChanged) {
        retentionChanged = false
        yield* retentionOfQueue.pipe(Effect.tapError(() => Effect.sync(() => (retentionChanged = true))))
      }
      while ((yield* store.sweepFinished(sweepBatch)) === sweepBatch) yield* Effect.yieldNow
    }).pipe(Effect.catch(warn("deleting expired finished executions")))

    const maintenance = Effect.gen(function*() {
      yield* refreshOffset.pipe(Effect.catch(() => Effect.void))
      yield* store.recoverExpiredLeases.pipe(
        Effect.catch((error) => Effect.as(warn("lease recovery")(error), 0))
      )
      yield* promote
      yield* wake
    })

    yield* registry.onRegister((registered) => {
      if (registered !== queue) return
      retentionChanged = true
      want()
    })
    // --- start-up: the first claim first ----------------------------------
    // A fresh worker's first statements are slow (new connections, nothing
    // cached yet), and six of them sent at once shared the CPU: the first
    // claim went out about 20 ms after the start and took 30–60 ms. Now it
    // goes out first, beside two small statements it needs: the retention
    // record (outcome writes wait for it, so what this worker finishes
    // expires by its tasks' contracts) and the store's clock. The periodic
    // statements and promotions start once it is back.
    for (let i = 0; i < exchanges; i++) yield* Effect.forkScoped(exchangeLoop)
    want()
    yield* Effect.forkScoped(Effect.ensuring(
      retentionOfQueue.pipe(Effect.catch((error) => {
        retentionChanged = true
        return warn("recording retention")(error)
      })),
      Deferred.done(retentionRecorded, Exit.void)
    ))
    yield* Effect.forkScoped(refreshOffset.pipe(Effect.catch(() => Effect.void)))
    yield* Effect.forkScoped(onSignals)
    const afterFirstClaim = <A, E>(effect: Effect.Effect<A, E>) => Effect.andThen(Deferred.await(firstClaimed), effect)
    // Promotions too (the listener's first signal asks for one).
    yield* Effect.forkScoped(afterFirstClaim(timer))
    yield* Effect.forkScoped(afterFirstClaim(Effect.repeat(heartbeat, Schedule.spaced(Duration.millis(config.heartbeatMillis)))))
    // The first maintenance pass catches up on what happened while no worker ran.
    yield* Effect.forkScoped(afterFirstClaim(Effect.repeat(maintenance, Schedule.spaced(Duration.millis(config.pollMillis)))))
    yield* Effect.forkScoped(afterFirstClaim(Effect.repeat(sweep, Schedule.spaced(Duration.millis(sweepIntervalMillis)))))

    // --- shutdown ------------------------------------------------------------
    // Registered last, so it runs first: the loops above are still alive while
    // running handlers finish and their outcomes are written.
    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        // No more claims; the exchange loop lives on to write the outcomes.
        stopping = true
        // No more dispatches either (a claim still in flight may offer again:
        // withdrawn once more after it, below).
        const offeredAtStop = offered
        const claimingAtStop = claiming
        if (offeredAtStop) yield* withdraw
        // Claimed but never started: give them back at once.
        for (const e of buffered.takeAll()) yield* finish({ _tag: "Released", id: e.id })
        // Wait on the runs themselves (a dispatched attempt is in `runs` before its fiber starts).
        const handlersDone = Effect.suspend(() => (runs.size === 0 ? Effect.void : Deferred.await(runsEnded)))
        const grace = Duration.millis(config.graceMillis)
        if ((yield* Effect.timeoutOption(handlersDone, grace))._tag === "None") {
          for (const id of runs.keys()) yield* stop(id, { _tag: "Shutdown" })
          // A handler that ignores interruption gets one more grace period;
          // then it is left behind, lease and all: the lease expires and the
          // execution runs again elsewhere. Shutdown must end.
          if ((yield* Effect.timeoutOption(handlersDone, grace))._tag === "None") {
            const stuck = [...runs.keys()]
            yield* Effect.logWarning(
              `effect-conductor: ${stuck.length} handler(s) did not stop when interrupted; leaving them to their leases: ${stuck.join(", ")}`
            )
            leftBehind = true
            for (const id of stuck) {
              leftRunning.add(id)
              runs.delete(id)
              release(id)
            }
          }
        }
        // Bounded: shutdown must end even when the database does not answer.
        const bounded = <E>(effect: Effect.Effect<void, E>, what: string) =>
          effect.pipe(
            Effect.timeoutOrElse({ duration: Duration.millis(config.leaseMillis), orElse: () => Effect.fail("timed out") }),
            Effect.catch(warn(what))
          )
        // A claim still in flight gives back what it took (see claimNext).
        const claimsEnded = Effect.suspend(() => {
          if (!claiming) return Effect.void
          const ended = Deferred.makeUnsafe<void>()
          claimEnded = ended
          return Deferred.await(ended)
        }).pipe(Effect.repeat({ while: () => claiming }))
        yield* bounded(claimsEnded, "waiting for the last claim")
        // Still in flight: what it takes is left to the worker's lease.
        if (claiming) leftBehind = true
        // No claim offers any more: once the offer is withdrawn, nothing more
        // is dispatched to this worker. What was, and never reached it, is
        // found by the look for orphans below before the worker's row goes.
        if (offered && (claimingAtStop || !offeredAtStop)) yield* withdraw
        // Every outcome committed (or given up on) before the batchers stop.
        if (leased.size > 0) yield* Deferred.await(drained)
        // Nothing is leased to this worker any more: its lease goes, so no
        // lease recovery has to look for its executions.
        yield* bounded(settleGivenUp, "ending given-up leases")
        if (!leftBehind && abandoned.size === 0 && !orphansUnchecked) {
          retired = true
          yield* bounded(store.retireWorker(workerId, dispatchesReceived), "removing the worker's lease")
        }
      })
    )

    return Worker.of({
      id: workerId,
      queue,
      running: Effect.sync(() => runs.size),
      held: Effect.sync(() => leased.size),
      committed: Effect.sync(() => committed)
    })
  })
