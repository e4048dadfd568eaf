/**
 * The hot SQL of the Postgres store, one statement per operation, each over
 * a whole batch (arrays in, `unnest` inside). `S` is the quoted schema name.
 * Why each shape is fast is said next to it.
 *
 * Rows of the hot table are always targeted with `id = ANY (array)`, never by
 * joining a CTE or `unnest`: the planner then uses the primary key whatever
 * its (often stale) estimates say, where a hash join could scan the whole
 * table and turn a million-row backlog into seconds per batch.
 *
 * The worker's per-batch statements (claim, finish, requeue, step and child
 * writes) live in functions (migrations/0004) planned with sequential scans
 * off: a prepared statement's generic plan made while the table was small is
 * a sequential scan, kept until the next ANALYZE. Reads and periodic
 * statements are planned at each call instead (see PgStore).
 */

const finishedColumns =
  "id, task, queue, status, priority, payload, result, error, attempts, max_attempts, dedupe_key, parent_id, parent_step, created_at, started_at, expires_at"

/**
 * When a row of `status` moved to the history now expires, from the
 * retention of `task` (migrations/0009). Both name the outer row's columns
 * qualified: unqualified, `task` would be the retention table's own.
 */
const expiresAt = (S: string, status: string, task: string) =>
  `(SELECT ${S}.expires_at(${status}, r.completed_ms, r.failed_ms) FROM ${S}.retention r WHERE r.task = ${task})`

/**
 * Wakes the parents of the executions in CTE `moved` (which must return
 * parent_id): each gets `wake = true` (a suspend that races with this finds it
 * and stays runnable), and a parent already waiting becomes pending.
 */
const wakeParents = (S: string, exclude = "") => `
  woken AS (
    UPDATE ${S}.executions p
    SET wake = true,
        status = CASE WHEN p.status = 'waiting' THEN 'pending' ELSE p.status END,
        run_at = CASE WHEN p.status = 'waiting' THEN now() ELSE p.run_at END,
        updated_at = now()
    WHERE p.id = ANY (ARRAY(SELECT parent_id FROM moved WHERE parent_id IS NOT NULL)) ${exclude}
    RETURNING p.queue, p.status
  )`

/** When a new execution runs: at `ms` (epoch ms) if given, else after `delay` ms (or now). */
const runAt = (ms: string, delay: string) =>
  `COALESCE(to_timestamp(${ms} / 1000.0), now() + COALESCE(${delay}, 0) * interval '1 millisecond')`
/**
 * An execution whose payload, task and queue name (as JSON text) come to at
 * most this many bytes may travel in a NOTIFY (8000 bytes at most, with the
 * ids and keys); a larger one waits to be claimed. The payload goes into the
 * NOTIFY as the `json` the caller sent, byte for byte (its `jsonb` text would
 * add spaces).
 */
const dispatchPayloadBytes = 7000
/** A new execution due later waits out of the claim index. */
const initialStatus = (at: string) => `CASE WHEN ${at} > now() THEN 'scheduled' ELSE 'pending' END`

export const queries = (S: string) => ({
  now: `SELECT (extract(epoch FROM clock_timestamp()) * 1000)::float8 AS now`,

  /**
   * Many executions in one statement. Future run_at goes to 'scheduled' (out of
   * the claim index). A dedupe key that matches an unfinished execution of the
   * same task returns that row (the no-op update makes RETURNING see it).
   * Rows without a dedupe key take a plain INSERT: ON CONFLICT would cost each
   * of them a speculative insertion (a probe of the dedupe index and a WAL
   * record to confirm the row) though they cannot conflict.
   * Inside a caller's transaction the notification is delivered at its commit.
   */
  insert: `
    WITH input AS (
      SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int[], $5::text[], $6::int[],
                           $7::float8[], $8::float8[], $9::text[], $10::uuid[], $11::text[])
        AS t(id, task, queue, priority, payload, max_attempts, run_at_ms, delay_ms, dedupe_key, parent_id, parent_step)
    ), timed AS (
      SELECT input.*, ${runAt("run_at_ms", "delay_ms")} AS run_at
      FROM input
    ), shaped AS (
      SELECT timed.*, ${initialStatus("run_at")} AS status FROM timed
    ), plain AS (
      INSERT INTO ${S}.executions AS e
        (id, task, queue, status, priority, run_at, payload, max_attempts, dedupe_key, parent_id, parent_step)
      SELECT id, task, queue, status, priority, run_at, payload::jsonb, max_attempts, dedupe_key, parent_id, parent_step
      FROM shaped WHERE dedupe_key IS NULL
      RETURNING e.id, e.task, e.dedupe_key, e.queue, e.status, true AS created
    ), deduped AS (
      INSERT INTO ${S}.executions AS e
        (id, task, queue, status, priority, run_at, payload, max_attempts, dedupe_key, parent_id, parent_step)
      SELECT id, task, queue, status, priority, run_at, payload::jsonb, max_attempts, dedupe_key, parent_id, parent_step
      FROM shaped WHERE dedupe_key IS NOT NULL
      ON CONFLICT (task, dedupe_key) WHERE dedupe_key IS NOT NULL
        DO UPDATE SET dedupe_key = EXCLUDED.dedupe_key
      RETURNING e.id, e.task, e.dedupe_key, e.queue, e.status, (xmax = 0) AS created
    ), inserted AS (
      SELECT * FROM plain UNION ALL SELECT * FROM deduped
    ), signalled AS (
      -- $12 (the signal channel, or NULL): wake workers with the commit itself,
      -- one notification per queue and statement, no extra round trip. A
      -- dedupe hit on a pending row wakes them too: the upsert held the row,
      -- so a claim running meanwhile skipped it and may have come back short.
      SELECT pg_notify($12, 'w:' || queue)
      FROM (SELECT DISTINCT queue FROM inserted WHERE status = 'pending') AS q
      WHERE $12::text IS NOT NULL
    )
    SELECT inserted.*, (SELECT count(*) FROM signalled)::int AS signals FROM inserted`,

  /**
   * One execution without a dedupe key (a plain `invoke`): the rules of
   * `insert` ($1-$10 its columns, $11 the signal channel or NULL) without
   * the unnest and the upsert branch, nor the array literals to build. One
   * invoke after another cost about a quarter less Node CPU and 0.15 ms less
   * each than through `insert` with one row (five interleaved rounds of 5,000).
   * When an idle worker offers a slot ($12, the channel, when dispatch is
   * allowed), the execution is leased to it here and the NOTIFY carries it
   * ('d:', migrations/0011): no 'w:' signal, no claim.
   */
  insertOne: `
    WITH t AS (
      SELECT ${runAt("$7::float8", "$8::float8")} AS run_at
    ), offer AS (
      -- $12 (the channel, or NULL: no dispatch): a slot an idle worker of
      -- this queue offers (migrations/0011), for a run that is due now and a
      -- payload that fits in a NOTIFY. SKIP LOCKED: a worker whose row a
      -- claim or another invoke holds is passed over, never waited for.
      UPDATE ${S}.workers w SET offered = w.offered - 1, dispatched = w.dispatched + 1
      WHERE w.id = (
        SELECT o.id FROM ${S}.workers o, t
        WHERE $12::text IS NOT NULL AND t.run_at <= now()
          AND octet_length($5::text) + octet_length(to_json($2::text)::text) + octet_length(to_json($3::text)::text)
            <= ${dispatchPayloadBytes}
          AND o.queue = $3::text AND o.offered > 0 AND $2::text = ANY (o.tasks)
          AND o.offered_until > now() AND o.expires_at > now()
        LIMIT 1
        FOR UPDATE OF o SKIP LOCKED)
      RETURNING w.id
    ), inserted AS (
      INSERT INTO ${S}.executions AS e
        (id, task, queue, status, priority, run_at, payload, max_attempts, parent_id, parent_step,
         lease_owner, attempts, started_at)
      SELECT $1::uuid, $2::text, $3::text,
             CASE WHEN offer.id IS NULL THEN ${initialStatus("t.run_at")} ELSE 'running' END,
             $4::int, t.run_at, $5::text::jsonb, $6::int, $9::uuid, $10::text,
             offer.id, CASE WHEN offer.id IS NULL THEN 0 ELSE 1 END, CASE WHEN offer.id IS NULL THEN NULL ELSE now() END
      FROM t LEFT JOIN offer ON true
      RETURNING e.id, e.task, e.dedupe_key, e.queue, e.status, true AS created, e.lease_owner, e.max_attempts, e.parent_id
    ), signalled AS (
      SELECT pg_notify($11, 'w:' || queue) FROM inserted WHERE status = 'pending' AND $11::text IS NOT NULL
    ), dispatched AS (
      SELECT pg_notify($12, 'd:' || json_build_object(
        'worker', lease_owner, 'id', id, 'task', task, 'queue', queue, 'payload', $5::text::json,
        'maxAttempts', max_attempts, 'parentId', parent_id)::text)
      FROM inserted WHERE lease_owner IS NOT NULL
    )
    SELECT i.id, i.task, i.dedupe_key, i.queue, i.status, i.created,
           (SELECT count(*) FROM signalled)::int AS signals, (SELECT count(*) FROM dispatched)::int AS dispatched
    FROM inserted i`,

  /**
   * Claims a batch (`claim`, migrations/0004, 0013 and 0014): the partial
   * claim index holds the runnable rows in claim order; the claim passes over
   * the running ones at its head, or starts after $9, the last row of the
   * worker's previous full claim. SKIP LOCKED lets concurrent claimers take
   * disjoint batches without waiting on each other. Its commit does not wait
   * for the WAL flush: if the server
   * crashed before the flush, the claim would be lost and the execution run
   * again without that attempt counted, which at-least-once allows; anything
   * durable the handler writes is committed with a flush, which covers the
   * claim's earlier WAL too. An idle worker starts a new execution a flush
   * sooner. Its columns are read by position (PgStore `toClaimed`): keep the
   * two in step.
   */
  claim: `
    WITH relaxed AS MATERIALIZED (
      -- This commit does not wait for its WAL flush (see above).
      SELECT set_config('synchronous_commit', 'off', true) AS setting
    )
    SELECT c.id, c.task, c.payload, c.attempts, c.max_attempts, c.parent_id, c.fresh
    FROM relaxed, ${S}.claim($1, $2::text[], $3, $4, $5, $6, $7, $8, $9::uuid) AS c`,

  /**
   * Finishes a batch for good (`finish`, migrations/0004 and 0005): $1
   * worker, $2-$5 the batch, $6 the signal channel. Fenced by the lease; wakes
   * parents and signals result waiters with the commit.
   */
  finish: `SELECT * FROM ${S}.finish($1, $2::uuid[], $3::text[], $4::text[], $5::text[], $6)`,

  /**
   * Deletes completed executions of tasks that keep none (`discard`,
   * migrations/0009): $1 worker, $2 the ids, $3 those that may have step
   * records. Returns the ids it left, to be finished as usual.
   */
  discard: `SELECT id FROM ${S}.discard($1, $2::uuid[], $3::uuid[])`,

  /** Records the retention of tasks ($1, in ms: $2 completed, $3 failed or cancelled; NULL keeps them for good). */
  setRetention: `
    INSERT INTO ${S}.retention (task, completed_ms, failed_ms)
    SELECT * FROM unnest($1::text[], $2::float8[], $3::float8[])
    ON CONFLICT (task) DO UPDATE SET completed_ms = EXCLUDED.completed_ms, failed_ms = EXCLUDED.failed_ms
    WHERE (retention.completed_ms, retention.failed_ms) IS DISTINCT FROM (EXCLUDED.completed_ms, EXCLUDED.failed_ms)`,

  /**
   * Deletes up to $1 expired executions from the history, oldest expiry
   * first (through the partial expiry index), with their step records. One
   * whose parent has not finished stays: the parent reads its outcome when
   * it resumes. Returns how many it deleted.
   */
  sweep: `
    WITH expired AS (
      SELECT f.id FROM ${S}.finished_executions f
      WHERE f.expires_at <= now()
        AND (f.parent_id IS NULL OR NOT EXISTS (SELECT 1 FROM ${S}.executions p WHERE p.id = f.parent_id))
      ORDER BY f.expires_at LIMIT $1
      FOR UPDATE SKIP LOCKED
    ), gone AS (
      DELETE FROM ${S}.finished_executions f WHERE f.id = ANY (ARRAY(SELECT id FROM expired))
      RETURNING f.id
    ), steps_gone AS (
      DELETE FROM ${S}.steps s WHERE s.execution_id = ANY (ARRAY(SELECT id FROM gone))
    )
    SELECT count(*)::int AS deleted FROM gone`,

  /**
   * Puts leased rows back in one statement (`requeue`, migrations/0004).
   *   next 'retry':   scheduled at now()+delay (pending when the delay is 0); the attempt stays used
   *   next 'release': pending; the attempt is given back
   *   next 'suspend': waiting until at_ms (NULL: until woken); the attempt is given back;
   *                   pending at once if a wake arrived while it ran
   * A row whose cancel was requested while it ran ends as cancelled instead.
   * Returns the requeued rows.
   */
  requeue: `SELECT * FROM ${S}.requeue($1, $2::uuid[], $3::text[], $4::float8[], $5::text[], $6)`,

  /**
   * Rows leased to $1 that the worker does not know of ($2): see
   * Store.orphans. Running rows have no index (migrations/0010), so this
   * scans the table; it runs only after a claim failed, after the listener's
   * connection was lost, when dispatches did not all arrive, and at the
   * shutdown of a worker that offered slots.
   */
  orphans: `SELECT id FROM ${S}.executions
    WHERE status = 'running' AND lease_owner = $1 AND NOT (id = ANY ($2::uuid[]))`,

  /**
   * Extends the worker's lease ($1, for $3 ms: migrations/0010), which covers
   * everything leased to it, and reads which of $2 it still holds (rows not
   * returned are no longer its own) and their cancel requests, and how many
   * executions invokes have dispatched to it (0011; on every row, and on one
   * with a NULL id when it holds none of $2). It never makes the worker's
   * row: a row that is gone was taken by a lease recovery, with everything
   * leased to it (no row comes back: nothing is held, even where this
   * statement's snapshot, taken before that recovery committed, still shows
   * the lease), or removed at the worker's shutdown, which a heartbeat still
   * in flight must not undo. The worker's next claim makes it again.
   */
  heartbeat: `
    WITH alive AS (
      UPDATE ${S}.workers SET expires_at = now() + $3 * interval '1 millisecond'
      WHERE id = $1
      RETURNING dispatched
    )
    SELECT alive.dispatched, e.id, e.cancel_reason FROM alive
    LEFT JOIN ${S}.executions e
      ON e.id = ANY($2::uuid[]) AND e.lease_owner = $1 AND e.status = 'running'`,

  /**
   * Workers whose lease expired (they died, or lost the database for longer
   * than a lease): deleted, skipping any a claim or heartbeat holds just now.
   * Run in one transaction with `expireLeases` over their executions.
   */
  deadWorkers: `
    DELETE FROM ${S}.workers
    WHERE id IN (SELECT id FROM ${S}.workers WHERE expires_at < now() FOR UPDATE SKIP LOCKED)
    RETURNING id`,

  /**
   * A stopping worker's offer (migrations/0011) ends; returns how many
   * executions were dispatched to it in all. It waits for an invoke that
   * holds the row: once it commits, nothing more is dispatched to $1, and
   * slots given back later (`reoffer`) find no offer to go back on.
   */
  withdrawOffer: `UPDATE ${S}.workers SET offered = 0, offered_until = NULL WHERE id = $1 RETURNING dispatched`,

  /**
   * Slots freed since the standing offer was made go back on it ($2 more),
   * so an idle worker keeps being handed invokes between its claims. Only
   * while the offer stands: one withdrawn or ended by a claim that made no
   * new offer (offered_until NULL, migrations/0012) or one lapsed stays ended. Like a claim's, the commit does not wait for the
   * WAL flush: an offer lost in a crash costs only a claim.
   */
  reoffer: `
    WITH relaxed AS MATERIALIZED (
      SELECT set_config('synchronous_commit', 'off', true) AS setting
    )
    UPDATE ${S}.workers SET offered = offered + $2 FROM relaxed
    WHERE id = $1 AND offered_until > now()`,

  /**
   * A worker that stopped with nothing leased: its lease goes, unless an
   * invoke may still have dispatched something to it unseen (0011): an offer
   * standing, or more dispatches counted ($2 what the worker accounts for).
   * Then the row is left to expire, and lease recovery gives those back.
   */
  retireWorker: `DELETE FROM ${S}.workers WHERE id = $1 AND offered = 0 AND dispatched = $2`,

  /**
   * Ends leases as a dead worker's end: the executions leased to one of $1
   * (of $2 when given, the ones a live worker gave up, $3 true; all of theirs
   * otherwise, by a sequential scan) become
   * runnable again while attempts remain, and fail for good otherwise (the
   * attempt counted at claim stays used, so work that kills its workers still
   * ends). A cancel requested of such an execution finishes it as cancelled.
   * Locks the rows (waiting, not skipping): the worker's row is gone, so a
   * row skipped now would never be looked at again.
   */
  expireLeases: `
    WITH expired AS (
      SELECT id FROM ${S}.executions
      WHERE status = 'running' AND lease_owner = ANY ($1::uuid[]) AND ($2::uuid[] IS NULL OR id = ANY ($2::uuid[]))
      FOR UPDATE
    ), retried AS (
      UPDATE ${S}.executions e
      SET status = 'pending', lease_owner = NULL, run_at = now(), updated_at = now(),
          last_error = jsonb_build_object('_tag', 'Defect', 'message', CASE WHEN $3::boolean
            THEN 'the worker running attempt ' || e.attempts || ' gave its lease up: it could not write the outcome or renew the lease in time'
            ELSE 'the lease expired: the worker running attempt ' || e.attempts || ' stopped heartbeating' END)
      WHERE e.id = ANY (ARRAY(SELECT id FROM expired)) AND e.attempts < e.max_attempts AND e.cancel_reason IS NULL
      RETURNING e.queue
    ), done AS (
      DELETE FROM ${S}.executions e
      WHERE e.id = ANY (ARRAY(SELECT id FROM expired)) AND (e.attempts >= e.max_attempts OR e.cancel_reason IS NOT NULL)
      RETURNING e.*
    ), moved AS (
      INSERT INTO ${S}.finished_executions (${finishedColumns})
      SELECT id, task, queue, CASE WHEN cancel_reason IS NULL THEN 'failed' ELSE 'cancelled' END, priority, payload, NULL,
             CASE WHEN cancel_reason IS NULL THEN jsonb_build_object('_tag', 'Defect', 'message', CASE WHEN $3::boolean
               THEN 'the worker gave its lease up on the last attempt (' || attempts || ' of ' || max_attempts || '): it could not write the outcome or renew the lease in time'
               ELSE 'the lease expired on the last attempt (' || attempts || ' of ' || max_attempts || '): the worker stopped heartbeating' END)
             ELSE jsonb_build_object('_tag', 'Cancelled', 'reason', cancel_reason) END,
             attempts, max_attempts, dedupe_key, parent_id, parent_step, created_at, started_at,
             ${expiresAt(S, "CASE WHEN done.cancel_reason IS NULL THEN 'failed' ELSE 'cancelled' END", "done.task")}
      FROM done
      RETURNING parent_id
    ), ${wakeParents(S)}
    SELECT (SELECT count(*) FROM retried)::int + (SELECT count(*) FROM moved)::int AS touched,
           ARRAY(SELECT DISTINCT queue FROM (SELECT queue FROM retried UNION ALL SELECT queue FROM woken WHERE status = 'pending') q) AS queues,
           (SELECT count(*) FROM moved)::int AS finished`,

  /**
   * Promotes due scheduled and waiting rows to pending through the due-time
   * index (whose predicate, \`NOT runnable\`, is those two states: 0013),
   * 5000 at a time (\`more\` says the batch was full), and reports the
   * earliest run_at of what it left behind so callers can arm a timer instead
   * of polling. A due row another statement holds locked right now (a result
   * waiter marking it, a dedupe hit) is skipped, and its run_at, already past,
   * is that next time: skipped silently, it would have waited for the poll.
   */
  promoteDue: `
    WITH due AS (
      SELECT id FROM ${S}.executions
      WHERE NOT runnable AND run_at <= now()
      ORDER BY run_at LIMIT 5000
      FOR UPDATE SKIP LOCKED
    ), promoted AS (
      UPDATE ${S}.executions e SET status = 'pending', updated_at = now()
      WHERE e.id = ANY (ARRAY(SELECT id FROM due))
      RETURNING e.queue
    )
    SELECT ARRAY(SELECT DISTINCT queue FROM promoted) AS queues,
           (SELECT count(*) FROM promoted) = 5000 AS more,
           (SELECT (extract(epoch FROM min(run_at)) * 1000)::float8 FROM ${S}.executions
             WHERE NOT runnable AND run_at < 'infinity'
               AND NOT (id = ANY (ARRAY(SELECT id FROM due)))) AS next_ms`,

  /**
   * Cancels an execution and its unfinished descendants: those not running
   * move to finished as cancelled at once; running ones get cancel_reason and
   * are stopped by their worker (told by NOTIFY, or by its next heartbeat).
   */
  cancel: `
    WITH RECURSIVE tree AS (
      SELECT id FROM ${S}.executions WHERE id = $1
      UNION
      SELECT c.id FROM ${S}.executions c JOIN tree t ON c.parent_id = t.id
    ), locked AS (
      SELECT e.id, e.status FROM ${S}.executions e WHERE e.id = ANY (ARRAY(SELECT id FROM tree)) FOR UPDATE
    ), done AS (
      DELETE FROM ${S}.executions e
      WHERE e.id = ANY (ARRAY(SELECT id FROM locked WHERE status <> 'running'))
      RETURNING e.*
    ), moved AS (
      INSERT INTO ${S}.finished_executions (${finishedColumns})
      SELECT id, task, queue, 'cancelled', priority, payload, NULL,
             jsonb_build_object('_tag', 'Cancelled', 'reason', $2::text),
             attempts, max_attempts, dedupe_key, parent_id, parent_step, created_at, started_at,
             ${expiresAt(S, "'cancelled'", "done.task")}
      FROM done
      RETURNING id, parent_id
    ), flagged AS (
      UPDATE ${S}.executions e SET cancel_reason = $2, updated_at = now()
      WHERE e.id = ANY (ARRAY(SELECT id FROM locked WHERE status = 'running'))
      RETURNING e.id
    ), ${wakeParents(S, "AND p.id NOT IN (SELECT id FROM locked)")}
    SELECT (SELECT status FROM locked WHERE id = $1) AS root_status,
           ARRAY(SELECT id FROM flagged) AS flagged,
           (SELECT count(*) FROM moved)::int AS finished,
           ARRAY(SELECT DISTINCT queue FROM woken WHERE status = 'pending') AS queues,
           EXISTS (SELECT 1 FROM ${S}.finished_executions WHERE id = $1) AS already_finished`,

  /** Read with a fresh snapshot, after a cancel found nothing to lock (it may have just finished). */
  finishedExists: `SELECT EXISTS (SELECT 1 FROM ${S}.finished_executions WHERE id = $1) AS finished`,

  getActive: `SELECT *, NULL::jsonb AS result, last_error AS error, NULL::timestamptz AS finished_at
    FROM ${S}.executions WHERE id = $1`,
  getFinished: `SELECT *, NULL::timestamptz AS run_at, NULL::text AS cancel_reason
    FROM ${S}.finished_executions WHERE id = $1`,
  childrenActive: `SELECT *, NULL::jsonb AS result, last_error AS error, NULL::timestamptz AS finished_at
    FROM ${S}.executions WHERE parent_id = $1`,
  childrenFinished: `SELECT *, NULL::timestamptz AS run_at, NULL::text AS cancel_reason
    FROM ${S}.finished_executions WHERE parent_id = $1`,

  /** Through `outcomes()` (migrations/0003), whose plan cannot be a sequential scan. */
  outcomes: `SELECT id, task, status, attempts, result, error FROM ${S}.outcomes($1::uuid[])`,
  /**
   * Marks the awaited and reads outcomes (`await_outcomes`, migrations/0005);
   * $2 the signal channel. Its commit does not wait for the WAL flush, as a
   * claim's: a mark lost in a server crash costs only a notification (the
   * waiters look at everything they await when their listener reconnects),
   * and the finish it is for flushes it anyway. A durable-steps workload
   * waits on every flush in turn, so a mark that flushed cost it one.
   */
  awaitOutcomes: `
    WITH relaxed AS MATERIALIZED (
      SELECT set_config('synchronous_commit', 'off', true) AS setting
    )
    SELECT a.id, a.busy, a.task, a.status, a.attempts, a.result, a.error
    FROM relaxed, ${S}.await_outcomes($1::uuid[], $2) AS a`,

  unknownIds: `SELECT u.id FROM unnest($1::uuid[]) AS u(id)
    WHERE NOT EXISTS (SELECT 1 FROM ${S}.executions e WHERE e.id = u.id)
      AND NOT EXISTS (SELECT 1 FROM ${S}.finished_executions f WHERE f.id = u.id)`,

  steps: `SELECT name, kind, value, error, attempt, (extract(epoch FROM recorded_at) * 1000)::float8 AS recorded_ms
    FROM ${S}.steps WHERE execution_id = $1`,

  /**
   * Records steps of many executions in one statement and one commit
   * (`record_steps`, migrations/0006 over 0004). Fenced by the lease; the
   * first writer wins: a plain INSERT when nothing conflicts, else (rarely)
   * the careful statement with ON CONFLICT DO NOTHING. One row
   * per input the lease allowed, by its 1-based position (`ord`): what this
   * statement inserted comes back with only its recording time (the input is
   * what is stored, so nothing else is sent back and decoded); what lost to an
   * earlier writer comes back as stored.
   */
  recordSteps: `SELECT * FROM ${S}.record_steps($1, $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::int[])`,

  /**
   * Starts children once per (parent, step name) (`start_children`,
   * migrations/0004): the step row is the
   * once-only guard (a finished child leaves the hot table, so a unique index
   * there could not be), and only children whose step row was inserted here
   * are inserted. Fenced by the parent's lease; a parent whose cancel was
   * requested starts none (its cancel_reason comes back instead).
   */
  startChildren: `SELECT * FROM ${S}.start_children($1, $2::uuid[], $3::text[], $4::text[], $5::int[], $6::text[], $7::int[],
    $8::float8[], $9::uuid[], $10::text[], $11::int[], $12::float8[])`
})
