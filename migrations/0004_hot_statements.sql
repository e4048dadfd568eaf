-- The worker's per-batch statements, as functions planned with sequential
-- scans off (claim also with sorts and bitmap scans off, as claimable is).
--
-- Prepared statements keep a generic plan made with the statistics of their
-- first executions. Made while `executions` was small and analyzed, that plan
-- is a sequential scan (cheapest on a page or two), and it stays until the
-- table is next analyzed: after a burst of 300k invocations every claim,
-- finish, requeue and step write read the whole table (40-160 ms per
-- statement instead of about one). Planned in here, each can only use the
-- primary key, the lease index or the claim index, whatever the statistics
-- say. The SQL is what queries.ts had (requeue now runs in three steps, see
-- there); queries.ts calls these functions.

-- Claims up to n pending executions of task_names in queue_name, highest
-- priority first then oldest run_at, and leases them to p_owner for
-- p_lease_ms, counting an attempt. `fresh`: started by this very claim
-- (started_at is only set by a first claim, to the transaction's now()).
CREATE FUNCTION {{schema}}.claim(queue_name text, task_names text[], n integer, p_owner uuid, p_lease_ms float8)
RETURNS TABLE (id uuid, task text, queue text, payload jsonb, attempts integer, max_attempts integer, parent_id uuid, fresh boolean)
LANGUAGE plpgsql
SET enable_sort = off
SET enable_bitmapscan = off
SET enable_seqscan = off
AS $$
#variable_conflict use_column
BEGIN
  RETURN QUERY
    WITH picked AS (
      SELECT e.id FROM {{schema}}.executions e
      WHERE e.status = 'pending' AND e.queue = queue_name AND e.task = ANY (task_names)
      ORDER BY e.priority DESC, e.run_at, e.id
      LIMIT n
      FOR UPDATE SKIP LOCKED
    )
    UPDATE {{schema}}.executions e
    SET status = 'running', attempts = e.attempts + 1, lease_owner = p_owner,
        lease_expires_at = now() + p_lease_ms * interval '1 millisecond',
        started_at = COALESCE(e.started_at, now()), wake = false, updated_at = now()
    WHERE e.id = ANY (ARRAY(SELECT p.id FROM picked p))
    RETURNING e.id, e.task, e.queue, e.payload, e.attempts, e.max_attempts, e.parent_id, (e.started_at = now());
END
$$;

-- claimable (0002) stays: workers of the previous version, still running
-- during a rolling upgrade, claim with it.

-- Finishes a batch for good (completed / failed / cancelled): deletes the
-- leased rows and inserts them into finished_executions, wakes their parents,
-- and sends the signals with the commit. Fenced: only rows still leased to
-- p_owner move. A cancel request that committed first turns a completion or
-- failure into 'cancelled' with the requested reason. Result waiters are told
-- with `f:` and up to 190 ids per notification (a payload stays under 8000
-- bytes); a parent woken to pending sends `w:<queue>`.
CREATE FUNCTION {{schema}}.finish(p_owner uuid, p_ids uuid[], p_statuses text[], p_results text[], p_errors text[], p_channel text)
RETURNS TABLE (finished integer, signals integer)
LANGUAGE plpgsql
SET enable_seqscan = off
AS $$
#variable_conflict use_column
BEGIN
  RETURN QUERY
    WITH input AS (
      SELECT t.id, t.status, t.result::jsonb AS result, t.error::jsonb AS error
      FROM unnest(p_ids, p_statuses, p_results, p_errors) AS t(id, status, result, error)
    ), deleted AS (
      DELETE FROM {{schema}}.executions e
      WHERE e.id = ANY (p_ids) AND e.lease_owner = p_owner AND e.status = 'running'
      RETURNING e.*
    ), done AS (
      SELECT d.*, i.status AS final_status, i.result AS final_result, i.error AS final_error
      FROM deleted d JOIN input i ON i.id = d.id
    ), moved AS (
      INSERT INTO {{schema}}.finished_executions
        (id, task, queue, status, priority, payload, result, error, attempts, max_attempts, dedupe_key, parent_id, parent_step, created_at, started_at)
      SELECT d.id, d.task, d.queue,
             CASE WHEN d.cancel_reason IS NOT NULL THEN 'cancelled' ELSE d.final_status END,
             d.priority, d.payload,
             CASE WHEN d.cancel_reason IS NOT NULL THEN NULL ELSE d.final_result END,
             CASE WHEN d.cancel_reason IS NOT NULL OR d.final_status = 'cancelled'
                  THEN jsonb_build_object('_tag', 'Cancelled', 'reason', COALESCE(d.cancel_reason, d.final_error ->> 'reason', 'cancelled'))
                  ELSE d.final_error END,
             d.attempts, d.max_attempts, d.dedupe_key, d.parent_id, d.parent_step, d.created_at, d.started_at
      FROM done d
      RETURNING finished_executions.id, finished_executions.parent_id
    ), woken AS (
      UPDATE {{schema}}.executions p
      SET wake = true,
          status = CASE WHEN p.status = 'waiting' THEN 'pending' ELSE p.status END,
          run_at = CASE WHEN p.status = 'waiting' THEN now() ELSE p.run_at END,
          updated_at = now()
      WHERE p.id = ANY (ARRAY(SELECT m.parent_id FROM moved m WHERE m.parent_id IS NOT NULL))
      RETURNING p.queue, p.status
    ), signalled AS (
      SELECT pg_notify(p_channel, 'f:' || string_agg(c.id::text, ','))
      FROM (SELECT m.id, (row_number() OVER () - 1) / 190 AS chunk FROM moved m) AS c GROUP BY c.chunk
      UNION ALL
      SELECT pg_notify(p_channel, 'w:' || q.queue) FROM (SELECT DISTINCT w.queue FROM woken w WHERE w.status = 'pending') AS q
    )
    SELECT (SELECT count(*) FROM moved)::int, (SELECT count(*) FROM signalled)::int;
END
$$;

-- Puts leased rows back (see `requeue` in queries.ts for the meaning of each
-- `next`), in three steps of one transaction:
--   1. lock the rows still leased to p_owner: a cancel committing meanwhile is
--      then seen (the lock returns the latest version), so each row goes
--      exactly one way below;
--   2. requeue those without a cancel request;
--   3. finish the others as cancelled, through `finish` (which turns a row
--      with a cancel request into 'cancelled' with its reason). A parent
--      requeued in step 2 and woken in step 3 is then woken for good.
-- Returns the requeued rows.
CREATE FUNCTION {{schema}}.requeue(p_owner uuid, p_ids uuid[], p_nexts text[], p_at_ms float8[], p_errors text[], p_channel text)
RETURNS TABLE (queue text, status text, run_at_ms float8)
LANGUAGE plpgsql
SET enable_seqscan = off
AS $$
#variable_conflict use_column
DECLARE
  back uuid[];
  cancelled uuid[];
BEGIN
  WITH locked AS (
    SELECT e.id, e.cancel_reason FROM {{schema}}.executions e
    WHERE e.id = ANY (p_ids) AND e.lease_owner = p_owner AND e.status = 'running'
    FOR UPDATE
  )
  SELECT array_agg(l.id) FILTER (WHERE l.cancel_reason IS NULL), array_agg(l.id) FILTER (WHERE l.cancel_reason IS NOT NULL)
  INTO back, cancelled
  FROM locked l;

  RETURN QUERY
    WITH input AS (
      SELECT t.id, t.next, t.at_ms, t.error::jsonb AS error
      FROM unnest(p_ids, p_nexts, p_at_ms, p_errors) AS t(id, next, at_ms, error)
    ), target AS (
      SELECT i.id, i.next, i.error,
             CASE i.next WHEN 'retry' THEN now() + i.at_ms * interval '1 millisecond'
                         WHEN 'suspend' THEN COALESCE(to_timestamp(i.at_ms / 1000.0), 'infinity')
                         ELSE now() END AS run_at
      FROM input i
    )
    UPDATE {{schema}}.executions e
    SET status = CASE
          WHEN t.next = 'suspend' THEN CASE WHEN e.wake OR t.run_at <= now() THEN 'pending' ELSE 'waiting' END
          WHEN t.run_at > now() THEN 'scheduled'
          ELSE 'pending' END,
        run_at = CASE WHEN t.next = 'suspend' AND (e.wake OR t.run_at <= now()) THEN now() ELSE t.run_at END,
        attempts = CASE WHEN t.next = 'retry' THEN e.attempts ELSE e.attempts - 1 END,
        last_error = COALESCE(t.error, e.last_error),
        wake = false, lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
    FROM target t
    WHERE e.id = ANY (back) AND e.id = t.id
    RETURNING e.queue, e.status, (extract(epoch FROM e.run_at) * 1000)::float8;

  IF cancelled IS NOT NULL THEN
    PERFORM {{schema}}.finish(p_owner, cancelled,
      array_fill('cancelled'::text, ARRAY[cardinality(cancelled)]),
      array_fill(NULL::text, ARRAY[cardinality(cancelled)]),
      array_fill(NULL::text, ARRAY[cardinality(cancelled)]),
      p_channel);
  END IF;
END
$$;

-- Records steps of many executions (see `recordSteps` in queries.ts): one row
-- per input the lease allowed, by its 1-based position.
CREATE FUNCTION {{schema}}.record_steps(p_owner uuid, p_ids uuid[], p_names text[], p_kinds text[], p_values text[], p_errors text[], p_attempts integer[])
RETURNS TABLE (ord integer, kind text, value jsonb, error jsonb, attempt integer, recorded_ms float8, cancel_reason text)
LANGUAGE plpgsql
SET enable_seqscan = off
AS $$
#variable_conflict use_column
BEGIN
  RETURN QUERY
    WITH input AS (
      SELECT * FROM unnest(p_ids, p_names, p_kinds, p_values, p_errors, p_attempts) WITH ORDINALITY
        AS t(execution_id, name, kind, value, error, attempt, ord)
    ), owned AS (
      SELECT i.*, e.cancel_reason FROM input i JOIN {{schema}}.executions e
        ON e.id = i.execution_id AND e.lease_owner = p_owner AND e.status = 'running'
      WHERE e.id = ANY (p_ids)
    ), inserted AS (
      -- An execution whose cancel was requested records nothing more: it
      -- ends cancelled whatever its handler does next.
      INSERT INTO {{schema}}.steps (execution_id, name, kind, value, error, attempt)
      SELECT o.execution_id, o.name, o.kind, o.value::jsonb, o.error::jsonb, o.attempt FROM owned o
      WHERE o.cancel_reason IS NULL
      ON CONFLICT DO NOTHING
      RETURNING steps.execution_id, steps.name
    ),
    -- Only rows that lost to an earlier writer read the stored one back (the
    -- usual batch has none, and then costs no lookup); a row of a cancelled
    -- execution with nothing stored comes back with its cancel reason.
    lost AS MATERIALIZED (
      SELECT o.ord, o.execution_id, o.name, o.cancel_reason FROM owned o
      WHERE NOT EXISTS (SELECT 1 FROM inserted i WHERE i.execution_id = o.execution_id AND i.name = o.name)
    )
    SELECT o.ord::int, NULL::text, NULL::jsonb, NULL::jsonb, NULL::int,
           (extract(epoch FROM now()) * 1000)::float8, NULL::text
    FROM inserted i JOIN owned o ON o.execution_id = i.execution_id AND o.name = i.name
    UNION ALL
    SELECT l.ord::int, s.kind, s.value, s.error, s.attempt, (extract(epoch FROM s.recorded_at) * 1000)::float8,
           CASE WHEN s.name IS NULL THEN l.cancel_reason END
    FROM lost l LEFT JOIN {{schema}}.steps s ON s.execution_id = l.execution_id AND s.name = l.name;
END
$$;

-- Starts children once per (parent, step name) (see `startChildren` in
-- queries.ts). Fenced by the parent's lease; a parent whose cancel was
-- requested starts none (its cancel_reason comes back instead).
CREATE FUNCTION {{schema}}.start_children(
  p_owner uuid, p_ids uuid[], p_tasks text[], p_queues text[], p_priorities integer[], p_payloads text[],
  p_max_attempts integer[], p_delays_ms float8[], p_parent_ids uuid[], p_parent_steps text[], p_attempts integer[],
  p_timeouts_ms float8[])
RETURNS TABLE (parent_id uuid, parent_step text, child_id text, deadline_ms float8, started_queue text, cancel_reason text)
LANGUAGE plpgsql
SET enable_seqscan = off
AS $$
#variable_conflict use_column
BEGIN
  RETURN QUERY
    WITH input AS (
      SELECT * FROM unnest(p_ids, p_tasks, p_queues, p_priorities, p_payloads, p_max_attempts,
                           p_delays_ms, p_parent_ids, p_parent_steps, p_attempts, p_timeouts_ms)
        AS t(id, task, queue, priority, payload, max_attempts, delay_ms, parent_id, parent_step, attempt, timeout_ms)
    ), owned AS (
      SELECT i.*, e.cancel_reason FROM input i JOIN {{schema}}.executions e
        ON e.id = i.parent_id AND e.lease_owner = p_owner AND e.status = 'running'
      WHERE e.id = ANY (p_parent_ids)
    ), recorded AS (
      INSERT INTO {{schema}}.steps (execution_id, name, kind, value, attempt)
      SELECT o.parent_id, o.parent_step, 'child',
             jsonb_build_object('id', o.id, 'deadline',
               (extract(epoch FROM now() + o.timeout_ms * interval '1 millisecond') * 1000)::float8),
             o.attempt
      FROM owned o
      WHERE o.cancel_reason IS NULL
      ON CONFLICT DO NOTHING
      RETURNING steps.execution_id, steps.name, steps.value
    ), started AS (
      INSERT INTO {{schema}}.executions (id, task, queue, status, priority, run_at, payload, max_attempts, parent_id, parent_step)
      SELECT o.id, o.task, o.queue,
             CASE WHEN COALESCE(o.delay_ms, 0) > 0 THEN 'scheduled' ELSE 'pending' END,
             o.priority, now() + COALESCE(o.delay_ms, 0) * interval '1 millisecond', o.payload::jsonb, o.max_attempts,
             o.parent_id, o.parent_step
      FROM owned o JOIN recorded r ON r.execution_id = o.parent_id AND r.name = o.parent_step
      RETURNING executions.id, executions.queue
    )
    SELECT o.parent_id, o.parent_step,
           COALESCE(r.value, s.value) ->> 'id',
           (COALESCE(r.value, s.value) ->> 'deadline')::float8,
           st.queue, o.cancel_reason
    FROM owned o
    LEFT JOIN recorded r ON r.execution_id = o.parent_id AND r.name = o.parent_step
    LEFT JOIN started st ON st.id = o.id
    LEFT JOIN {{schema}}.steps s ON r.name IS NULL AND s.execution_id = o.parent_id AND s.name = o.parent_step;
END
$$;
