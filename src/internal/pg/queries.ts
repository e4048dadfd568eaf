/**
 * The hot SQL of the Postgres store, one statement per operation, each over
 * a whole batch (arrays in, `unnest` inside). `S` is the quoted schema name.
 * Why each shape is fast is said next to it.
 *
 * Rows of the hot table are always targeted with `id = ANY (array)`, never by
 * joining a CTE or `unnest`: the planner then uses the primary key whatever
 * its (often stale) estimates say, where a hash join could scan the whole
 * table and turn a million-row backlog into seconds per batch.
 */

const finishedColumns =
  "id, task, queue, status, priority, payload, result, error, attempts, max_attempts, dedupe_key, parent_id, parent_step, created_at, started_at"

/**
 * Tells result waiters which executions in CTE `moved` finished: `f:` and up
 * to 190 ids per notification (a payload must stay under 8000 bytes).
 */
const notifyFinished = `SELECT pg_notify($6, 'f:' || string_agg(id::text, ','))
      FROM (SELECT id, (row_number() OVER () - 1) / 190 AS chunk FROM moved) AS m GROUP BY chunk`

/**
 * Leases the rows of CTE `picked` to worker `owner` for `leaseMs` and counts
 * their attempt. `fresh`: started by this very claim (started_at is only set by
 * a first claim, to the claiming transaction's now()), so no step was recorded
 * yet and the worker need not read them.
 */
const leasePicked = (S: string, owner: string, leaseMs: string) => `
    UPDATE ${S}.executions e
    SET status = 'running', attempts = e.attempts + 1, lease_owner = ${owner},
        lease_expires_at = now() + ${leaseMs} * interval '1 millisecond',
        started_at = COALESCE(e.started_at, now()), wake = false, updated_at = now()
    WHERE e.id = ANY (ARRAY(SELECT id FROM picked))
    RETURNING e.id, e.task, e.queue, e.payload, e.attempts, e.max_attempts, e.parent_id,
              (e.started_at = now()) AS fresh`

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

/**
 * The CTEs that finish a batch for good (completed / failed / cancelled):
 * delete the leased rows and insert them into finished_executions, wake their
 * parents, and send the signals with the commit. $1 worker, $2-$5 the batch,
 * $6 the signal channel. Fenced: only rows still leased to $1 move. A cancel
 * request that committed first turns a completion or failure into 'cancelled'
 * with the requested reason.
 */
const finishCtes = (S: string) => `
    WITH input AS (
      SELECT id, status, result::jsonb, error::jsonb
      FROM unnest($2::uuid[], $3::text[], $4::text[], $5::text[]) AS t(id, status, result, error)
    ), deleted AS (
      DELETE FROM ${S}.executions e
      WHERE e.id = ANY ($2::uuid[]) AND e.lease_owner = $1 AND e.status = 'running'
      RETURNING e.*
    ), done AS (
      SELECT deleted.*, input.status AS final_status, input.result AS final_result, input.error AS final_error
      FROM deleted JOIN input USING (id)
    ), moved AS (
      INSERT INTO ${S}.finished_executions (${finishedColumns})
      SELECT id, task, queue,
             CASE WHEN cancel_reason IS NOT NULL THEN 'cancelled' ELSE final_status END,
             priority, payload,
             CASE WHEN cancel_reason IS NOT NULL THEN NULL ELSE final_result END,
             CASE WHEN cancel_reason IS NOT NULL OR final_status = 'cancelled'
                  THEN jsonb_build_object('_tag', 'Cancelled', 'reason', COALESCE(cancel_reason, final_error ->> 'reason', 'cancelled'))
                  ELSE final_error END,
             attempts, max_attempts, dedupe_key, parent_id, parent_step, created_at, started_at
      FROM done
      RETURNING id, parent_id
    ), ${wakeParents(S)},
    -- Signals go out with the commit, from inside the statement: no extra round
    -- trip, and one notification per 190 finished ids (not per row).
    signalled AS (
      ${notifyFinished}
      UNION ALL
      SELECT pg_notify($6, 'w:' || queue) FROM (SELECT DISTINCT queue FROM woken WHERE status = 'pending') AS q
    )`

export const queries = (S: string) => ({
  now: `SELECT (extract(epoch FROM clock_timestamp()) * 1000)::float8 AS now`,

  /**
   * Many executions in one statement. Future run_at goes to 'scheduled' (out of
   * the claim index). A dedupe key that matches an unfinished execution of the
   * same task returns that row (the no-op update makes RETURNING see it).
   * Inside a caller's transaction the notification is delivered at its commit.
   */
  insert: `
    WITH input AS (
      SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int[], $5::text[], $6::int[],
                           $7::float8[], $8::float8[], $9::text[], $10::uuid[], $11::text[])
        AS t(id, task, queue, priority, payload, max_attempts, run_at_ms, delay_ms, dedupe_key, parent_id, parent_step)
    ), timed AS (
      SELECT input.*, COALESCE(to_timestamp(run_at_ms / 1000.0), now() + COALESCE(delay_ms, 0) * interval '1 millisecond') AS run_at
      FROM input
    ), inserted AS (
      INSERT INTO ${S}.executions AS e
        (id, task, queue, status, priority, run_at, payload, max_attempts, dedupe_key, parent_id, parent_step)
      SELECT id, task, queue, CASE WHEN run_at > now() THEN 'scheduled' ELSE 'pending' END,
             priority, run_at, payload::jsonb, max_attempts, dedupe_key, parent_id, parent_step
      FROM timed
      ON CONFLICT (task, dedupe_key) WHERE dedupe_key IS NOT NULL
        DO UPDATE SET dedupe_key = EXCLUDED.dedupe_key
      RETURNING e.id, e.task, e.dedupe_key, e.queue, e.status, (xmax = 0) AS created
    ), signalled AS (
      -- $12 (the signal channel, or NULL): wake workers with the commit itself,
      -- one notification per queue and statement, no extra round trip.
      SELECT pg_notify($12, 'w:' || queue)
      FROM (SELECT DISTINCT queue FROM inserted WHERE created AND status = 'pending') AS q
      WHERE $12::text IS NOT NULL
    )
    SELECT inserted.*, (SELECT count(*) FROM signalled)::int AS signals FROM inserted`,

  /**
   * Claims a batch: the partial claim index holds only 'pending' rows in claim
   * order, so `claimable` (migrations/0002) reads `limit` index entries; SKIP
   * LOCKED lets concurrent claimers take disjoint batches without waiting on
   * each other. Its commit does not wait for the WAL flush: if the server
   * crashed before the flush, the claim would be lost and the execution run
   * again without that attempt counted, which at-least-once allows; anything
   * durable the handler writes is committed with a flush, which covers the
   * claim's earlier WAL too. An idle worker starts a new execution a flush
   * sooner.
   */
  claim: `
    WITH relaxed AS MATERIALIZED (
      -- This commit does not wait for its WAL flush (see above).
      SELECT set_config('synchronous_commit', 'off', true) AS setting
    ), picked AS (
      SELECT id FROM relaxed, ${S}.claimable($1, $2::text[], $3) AS id
    )
    ${leasePicked(S, "$4", "$5")}`,

  /** Finishes a batch for good; see finishCtes. */
  finish: `
    ${finishCtes(S)}
    SELECT (SELECT count(*) FROM moved)::int AS finished, (SELECT count(*) FROM signalled)::int AS signals`,

  /**
   * `finish` and `claim` in one statement and one commit: a busy worker hands
   * back a batch of outcomes and takes its next batch in a single round trip.
   * $7 queue, $8 tasks, $9 limit, $10 lease ms; the worker is $1. The claim
   * reads the snapshot from before the statement, which is all it needs (the
   * rows it finishes were running, not pending). One row at least, so the
   * signals are always evaluated; claimed columns are NULL when none was taken.
   */
  finishAndClaim: `
    ${finishCtes(S)},
    picked AS (
      SELECT id FROM ${S}.claimable($7, $8::text[], $9) AS id
    ), claimed AS (
      ${leasePicked(S, "$1", "$10")}
    )
    SELECT c.*, s.signals FROM (SELECT count(*)::int AS signals FROM signalled) AS s LEFT JOIN claimed c ON true`,

  /**
   * Puts leased rows back in one statement.
   *   next 'retry':   scheduled at now()+delay (pending when the delay is 0); the attempt stays used
   *   next 'release': pending; the attempt is given back
   *   next 'suspend': waiting until at_ms (NULL: until woken); the attempt is given back;
   *                   pending at once if a wake arrived while it ran
   * A row whose cancel was requested while it ran ends as cancelled instead.
   * Returns one row at least (queue NULL when nothing was requeued).
   */
  requeue: `
    WITH input AS (
      SELECT id, next, at_ms, error::jsonb
      FROM unnest($2::uuid[], $3::text[], $4::float8[], $5::text[]) AS t(id, next, at_ms, error)
    ), target AS (
      SELECT input.id, input.next, input.error,
             CASE input.next WHEN 'retry' THEN now() + input.at_ms * interval '1 millisecond'
                             WHEN 'suspend' THEN COALESCE(to_timestamp(input.at_ms / 1000.0), 'infinity')
                             ELSE now() END AS run_at
      FROM input
    ),
    -- Lock first: a cancel committing meanwhile is then seen (the lock returns
    -- the latest version), so each row goes exactly one way below.
    locked AS (
      SELECT e.id, e.cancel_reason FROM ${S}.executions e
      WHERE e.id = ANY ($2::uuid[]) AND e.lease_owner = $1 AND e.status = 'running'
      FOR UPDATE
    ), requeued AS (
      UPDATE ${S}.executions e
      SET status = CASE
            WHEN t.next = 'suspend' THEN CASE WHEN e.wake OR t.run_at <= now() THEN 'pending' ELSE 'waiting' END
            WHEN t.run_at > now() THEN 'scheduled'
            ELSE 'pending' END,
          run_at = CASE WHEN t.next = 'suspend' AND (e.wake OR t.run_at <= now()) THEN now() ELSE t.run_at END,
          attempts = CASE WHEN t.next = 'retry' THEN e.attempts ELSE e.attempts - 1 END,
          last_error = COALESCE(t.error, e.last_error),
          wake = false, lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
      FROM target t
      WHERE e.id = ANY (ARRAY(SELECT id FROM locked WHERE cancel_reason IS NULL)) AND e.id = t.id
      RETURNING e.queue, e.status, (extract(epoch FROM e.run_at) * 1000)::float8 AS run_at_ms
    ),
    -- Cancelled while it ran: it ends here, as cancelled, instead of going back.
    done AS (
      DELETE FROM ${S}.executions e
      WHERE e.id = ANY (ARRAY(SELECT id FROM locked WHERE cancel_reason IS NOT NULL))
      RETURNING e.*
    ), moved AS (
      INSERT INTO ${S}.finished_executions (${finishedColumns})
      SELECT id, task, queue, 'cancelled', priority, payload, NULL,
             jsonb_build_object('_tag', 'Cancelled', 'reason', cancel_reason),
             attempts, max_attempts, dedupe_key, parent_id, parent_step, created_at, started_at
      FROM done
      RETURNING id, parent_id
    ), ${wakeParents(S)},
    signalled AS (
      ${notifyFinished}
      UNION ALL
      SELECT pg_notify($6, 'w:' || queue) FROM (SELECT DISTINCT queue FROM woken WHERE status = 'pending') AS q
    )
    SELECT r.*, s.signals FROM (SELECT count(*)::int AS signals FROM signalled) AS s LEFT JOIN requeued r ON true`,

  /** Rows leased to $1 that the worker does not know of ($2): see Store.orphans. */
  orphans: `SELECT id FROM ${S}.executions
    WHERE status = 'running' AND lease_owner = $1 AND NOT (id = ANY ($2::uuid[]))`,

  /** Extends leases; rows not returned are no longer ours. */
  heartbeat: `
    UPDATE ${S}.executions
    SET lease_expires_at = now() + $3 * interval '1 millisecond'
    WHERE id = ANY($2::uuid[]) AND lease_owner = $1 AND status = 'running'
    RETURNING id, cancel_reason`,

  /**
   * Leases that expired (their worker died): runnable again while attempts
   * remain, failed for good otherwise (the attempt counted at claim stays
   * used, so work that kills its workers still ends). A cancel requested of a
   * dead worker's execution finishes it as cancelled.
   */
  recoverExpired: `
    WITH expired AS (
      SELECT id FROM ${S}.executions
      WHERE status = 'running' AND lease_expires_at < now()
      ORDER BY lease_expires_at LIMIT 1000
      FOR UPDATE SKIP LOCKED
    ), retried AS (
      UPDATE ${S}.executions e
      SET status = 'pending', lease_owner = NULL, lease_expires_at = NULL, run_at = now(), updated_at = now(),
          last_error = jsonb_build_object('_tag', 'Defect', 'message',
            'the lease expired: the worker running attempt ' || e.attempts || ' stopped heartbeating')
      WHERE e.id = ANY (ARRAY(SELECT id FROM expired)) AND e.attempts < e.max_attempts AND e.cancel_reason IS NULL
      RETURNING e.queue
    ), done AS (
      DELETE FROM ${S}.executions e
      WHERE e.id = ANY (ARRAY(SELECT id FROM expired)) AND (e.attempts >= e.max_attempts OR e.cancel_reason IS NOT NULL)
      RETURNING e.*
    ), moved AS (
      INSERT INTO ${S}.finished_executions (${finishedColumns})
      SELECT id, task, queue, CASE WHEN cancel_reason IS NULL THEN 'failed' ELSE 'cancelled' END, priority, payload, NULL,
             CASE WHEN cancel_reason IS NULL THEN jsonb_build_object('_tag', 'Defect', 'message',
               'the lease expired on the last attempt (' || attempts || ' of ' || max_attempts || '): the worker stopped heartbeating')
             ELSE jsonb_build_object('_tag', 'Cancelled', 'reason', cancel_reason) END,
             attempts, max_attempts, dedupe_key, parent_id, parent_step, created_at, started_at
      FROM done
      RETURNING parent_id
    ), ${wakeParents(S)}
    SELECT (SELECT count(*) FROM retried)::int + (SELECT count(*) FROM moved)::int AS touched,
           ARRAY(SELECT DISTINCT queue FROM (SELECT queue FROM retried UNION ALL SELECT queue FROM woken WHERE status = 'pending') q) AS queues,
           (SELECT count(*) FROM moved)::int AS finished`,

  /**
   * Promotes due scheduled and waiting rows to pending through the due-time
   * index (5000 at a time; \`more\` says the batch was full), and reports the
   * next future run_at so callers can arm a timer instead of polling.
   */
  promoteDue: `
    WITH due AS (
      SELECT id FROM ${S}.executions
      WHERE status IN ('scheduled', 'waiting') AND run_at <= now()
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
             WHERE status IN ('scheduled', 'waiting') AND run_at > now() AND run_at < 'infinity') AS next_ms`,

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
             attempts, max_attempts, dedupe_key, parent_id, parent_step, created_at, started_at
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

  unknownIds: `SELECT u.id FROM unnest($1::uuid[]) AS u(id)
    WHERE NOT EXISTS (SELECT 1 FROM ${S}.executions e WHERE e.id = u.id)
      AND NOT EXISTS (SELECT 1 FROM ${S}.finished_executions f WHERE f.id = u.id)`,

  steps: `SELECT name, kind, value, error, attempt, (extract(epoch FROM recorded_at) * 1000)::float8 AS recorded_ms
    FROM ${S}.steps WHERE execution_id = $1`,

  /**
   * Records steps of many executions in one statement and one commit. Fenced
   * by the lease; ON CONFLICT DO NOTHING makes the first writer win. One row
   * per input the lease allowed, by its 1-based position (`ord`): what this
   * statement inserted comes back with only its recording time (the input is
   * what is stored, so nothing else is sent back and decoded); what lost to an
   * earlier writer comes back as stored.
   */
  recordSteps: `
    WITH input AS (
      SELECT * FROM unnest($2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::int[]) WITH ORDINALITY
        AS t(execution_id, name, kind, value, error, attempt, ord)
    ), owned AS (
      SELECT input.*, e.cancel_reason FROM input JOIN ${S}.executions e
        ON e.id = input.execution_id AND e.lease_owner = $1 AND e.status = 'running'
      WHERE e.id = ANY ($2::uuid[])
    ), inserted AS (
      -- An execution whose cancel was requested records nothing more: it
      -- ends cancelled whatever its handler does next.
      INSERT INTO ${S}.steps (execution_id, name, kind, value, error, attempt)
      SELECT execution_id, name, kind, value::jsonb, error::jsonb, attempt FROM owned
      WHERE cancel_reason IS NULL
      ON CONFLICT DO NOTHING
      RETURNING execution_id, name
    ),
    -- Only rows that lost to an earlier writer read the stored one back (the
    -- usual batch has none, and then costs no lookup); a row of a cancelled
    -- execution with nothing stored comes back with its cancel reason.
    lost AS MATERIALIZED (
      SELECT o.ord, o.execution_id, o.name, o.cancel_reason FROM owned o
      WHERE NOT EXISTS (SELECT 1 FROM inserted i WHERE i.execution_id = o.execution_id AND i.name = o.name)
    )
    SELECT o.ord::int AS ord, NULL::text AS kind, NULL::jsonb AS value, NULL::jsonb AS error, NULL::int AS attempt,
           (extract(epoch FROM now()) * 1000)::float8 AS recorded_ms, NULL::text AS cancel_reason
    FROM inserted i JOIN owned o ON o.execution_id = i.execution_id AND o.name = i.name
    UNION ALL
    SELECT l.ord::int, s.kind, s.value, s.error, s.attempt, (extract(epoch FROM s.recorded_at) * 1000)::float8,
           CASE WHEN s.name IS NULL THEN l.cancel_reason END
    FROM lost l LEFT JOIN ${S}.steps s ON s.execution_id = l.execution_id AND s.name = l.name`,

  /**
   * Starts children once per (parent, step name): the step row is the
   * once-only guard (a finished child leaves the hot table, so a unique index
   * there could not be), and only children whose step row was inserted here
   * are inserted. Fenced by the parent's lease; a parent whose cancel was
   * requested starts none (its cancel_reason comes back instead).
   */
  startChildren: `
    WITH input AS (
      SELECT * FROM unnest($2::uuid[], $3::text[], $4::text[], $5::int[], $6::text[], $7::int[],
                           $8::float8[], $9::uuid[], $10::text[], $11::int[], $12::float8[])
        AS t(id, task, queue, priority, payload, max_attempts, delay_ms, parent_id, parent_step, attempt, timeout_ms)
    ), owned AS (
      SELECT input.*, e.cancel_reason FROM input JOIN ${S}.executions e
        ON e.id = input.parent_id AND e.lease_owner = $1 AND e.status = 'running'
      WHERE e.id = ANY ($9::uuid[])
    ), recorded AS (
      INSERT INTO ${S}.steps (execution_id, name, kind, value, attempt)
      SELECT parent_id, parent_step, 'child',
             jsonb_build_object('id', id, 'deadline',
               (extract(epoch FROM now() + timeout_ms * interval '1 millisecond') * 1000)::float8),
             attempt
      FROM owned
      WHERE cancel_reason IS NULL
      ON CONFLICT DO NOTHING
      RETURNING execution_id, name, value
    ), started AS (
      INSERT INTO ${S}.executions (id, task, queue, status, priority, run_at, payload, max_attempts, parent_id, parent_step)
      SELECT o.id, o.task, o.queue,
             CASE WHEN COALESCE(o.delay_ms, 0) > 0 THEN 'scheduled' ELSE 'pending' END,
             o.priority, now() + COALESCE(o.delay_ms, 0) * interval '1 millisecond', o.payload::jsonb, o.max_attempts,
             o.parent_id, o.parent_step
      FROM owned o JOIN recorded r ON r.execution_id = o.parent_id AND r.name = o.parent_step
      RETURNING id, queue
    )
    SELECT o.parent_id, o.parent_step,
           COALESCE(r.value, s.value) ->> 'id' AS child_id,
           (COALESCE(r.value, s.value) ->> 'deadline')::float8 AS deadline_ms,
           st.queue AS started_queue, o.cancel_reason
    FROM owned o
    LEFT JOIN recorded r ON r.execution_id = o.parent_id AND r.name = o.parent_step
    LEFT JOIN started st ON st.id = o.id
    LEFT JOIN ${S}.steps s ON r.name IS NULL AND s.execution_id = o.parent_id AND s.name = o.parent_step`
})
