-- Retention: how long finished executions are kept.
--
-- A task's contract says how long its completed executions, and its failed or
-- cancelled ones, stay in finished_executions (`retention`; kept for good when
-- it says nothing). Its workers record that here when they start, so every
-- statement that moves an execution to the history (a worker's finish, lease
-- recovery, a cancel) stamps the row with the time it expires. NULL: never.
CREATE TABLE {{schema}}.retention (
  task         text PRIMARY KEY,
  completed_ms float8,
  failed_ms    float8
);

ALTER TABLE {{schema}}.finished_executions ADD COLUMN expires_at timestamptz;
-- Only rows that expire are in it: history kept for good costs it nothing.
CREATE INDEX finished_executions_expiry_idx ON {{schema}}.finished_executions (expires_at)
  WHERE expires_at IS NOT NULL;

-- When a row moved to the history now expires. A row is kept at least a
-- minute, whatever its task says: a result waiter or a parent woken by its
-- finish reads it after the commit. One expression, so the planner inlines it
-- (with a FROM clause, it cost each finished row a function call: 2.5 µs).
CREATE FUNCTION {{schema}}.expires_at(p_status text, p_completed_ms float8, p_failed_ms float8)
RETURNS timestamptz
LANGUAGE sql STABLE
AS $$
  SELECT CASE
    WHEN p_status = 'completed' AND p_completed_ms IS NOT NULL
      THEN now() + greatest(p_completed_ms, 60000) * interval '1 millisecond'
    WHEN p_status <> 'completed' AND p_failed_ms IS NOT NULL
      THEN now() + greatest(p_failed_ms, 60000) * interval '1 millisecond'
  END
$$;

-- finish (0005) with the expiry stamped from the retention of each row's task.
CREATE OR REPLACE FUNCTION {{schema}}.finish(p_owner uuid, p_ids uuid[], p_statuses text[], p_results text[], p_errors text[], p_channel text)
RETURNS TABLE (finished integer, signals integer)
LANGUAGE plpgsql
SET enable_seqscan = off
SET plan_cache_mode = force_generic_plan
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
      SELECT d.*,
             CASE WHEN d.cancel_reason IS NOT NULL THEN 'cancelled' ELSE i.status END AS final_status,
             i.result AS final_result, i.error AS final_error
      FROM deleted d JOIN input i ON i.id = d.id
    ), policy AS MATERIALIZED (
      -- Looked up once per task of the batch; tasks kept for good are left
      -- out, so a batch that keeps everything joins an empty set.
      SELECT r.task, r.completed_ms, r.failed_ms FROM {{schema}}.retention r
      WHERE r.task = ANY (ARRAY(SELECT DISTINCT d.task FROM deleted d))
        AND (r.completed_ms IS NOT NULL OR r.failed_ms IS NOT NULL)
    ), moved AS (
      INSERT INTO {{schema}}.finished_executions
        (id, task, queue, status, priority, payload, result, error, attempts, max_attempts, dedupe_key, parent_id, parent_step,
         created_at, started_at, expires_at)
      SELECT d.id, d.task, d.queue, d.final_status, d.priority, d.payload,
             CASE WHEN d.cancel_reason IS NOT NULL THEN NULL ELSE d.final_result END,
             CASE WHEN d.final_status = 'cancelled'
                  THEN jsonb_build_object('_tag', 'Cancelled', 'reason', COALESCE(d.cancel_reason, d.final_error ->> 'reason', 'cancelled'))
                  ELSE d.final_error END,
             d.attempts, d.max_attempts, d.dedupe_key, d.parent_id, d.parent_step, d.created_at, d.started_at,
             {{schema}}.expires_at(d.final_status, p.completed_ms, p.failed_ms)
      FROM done d LEFT JOIN policy p ON p.task = d.task
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
      FROM (SELECT d.id, (row_number() OVER () - 1) / 190 AS chunk FROM done d WHERE d.awaited) AS c GROUP BY c.chunk
      UNION ALL
      SELECT pg_notify(p_channel, 'w:' || q.queue) FROM (SELECT DISTINCT w.queue FROM woken w WHERE w.status = 'pending') AS q
    )
    SELECT (SELECT count(*) FROM moved)::int, (SELECT count(*) FROM signalled)::int;
END
$$;

-- Completed executions of tasks that keep none (retention 0 for completed):
-- deleted outright, with their step records ($3: the ids that may have any),
-- in one plain statement. A move to the history cost Postgres about a third
-- more per execution than this delete (see bench/README.md). Fenced by the
-- lease; only rows nobody needs are taken: not awaited by a result waiter,
-- without a parent (which reads its child's outcome), and not asked to
-- cancel. Returns the ids it left, usually none: the caller finishes those
-- as usual (a row no longer leased to it is left alone there too).
CREATE FUNCTION {{schema}}.discard(p_owner uuid, p_ids uuid[], p_with_steps uuid[])
RETURNS TABLE (id uuid)
LANGUAGE plpgsql
SET enable_seqscan = off
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
BEGIN
  RETURN QUERY
    WITH gone AS (
      DELETE FROM {{schema}}.executions e
      WHERE e.id = ANY (p_ids) AND e.lease_owner = p_owner AND e.status = 'running'
        AND NOT e.awaited AND e.parent_id IS NULL AND e.cancel_reason IS NULL
      RETURNING e.id
    ), steps_gone AS (
      DELETE FROM {{schema}}.steps s
      WHERE s.execution_id = ANY (p_with_steps) AND s.execution_id IN (SELECT g.id FROM gone g)
    )
    SELECT i.id FROM unnest(p_ids) AS i(id)
    WHERE NOT EXISTS (SELECT 1 FROM gone g WHERE g.id = i.id);
END
$$;
