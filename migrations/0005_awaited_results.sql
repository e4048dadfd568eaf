-- Finish notifications name only awaited executions.
--
-- `finish` (0004) named every execution it finished in `f:` notifications,
-- and every process listening on the channel (each worker and each client)
-- received and parsed all of them, awaited or not: a worker draining a queue
-- spent a few microseconds per execution, in Postgres and in Node, on
-- notifications nobody read, and the cost grew with the number of processes.
--
-- A result waiter now marks what it awaits (`await_outcomes`), and `finish`
-- names only marked executions. Marking is an UPDATE of the execution row,
-- so it orders itself with the finish's DELETE on the row lock: a mark that
-- commits first is seen by the DELETE (which rereads the row it waited for),
-- and a finish that commits first is seen by the read that follows the mark.
--
-- During a rolling upgrade, a client of the previous version does not mark
-- what it awaits: it learns of those results from its periodic check (every
-- few seconds) instead of a notification.

ALTER TABLE {{schema}}.executions ADD COLUMN awaited boolean NOT NULL DEFAULT false;

-- As in 0004, except for the `signalled` CTE: only awaited rows are named.
CREATE OR REPLACE FUNCTION {{schema}}.finish(p_owner uuid, p_ids uuid[], p_statuses text[], p_results text[], p_errors text[], p_channel text)
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
      FROM (SELECT d.id, (row_number() OVER () - 1) / 190 AS chunk FROM done d WHERE d.awaited) AS c GROUP BY c.chunk
      UNION ALL
      SELECT pg_notify(p_channel, 'w:' || q.queue) FROM (SELECT DISTINCT w.queue FROM woken w WHERE w.status = 'pending') AS q
    )
    SELECT (SELECT count(*) FROM moved)::int, (SELECT count(*) FROM signalled)::int;
END
$$;

-- Marks executions as awaited and reads the outcomes of those finished, in two
-- statements (the read's snapshot is taken after the mark). A row another
-- statement holds locked right now (being finished, claimed or heartbeated)
-- is skipped instead of waited for, so marks of many rows never deadlock
-- with a finish of many rows: it comes back with `busy` and the caller
-- marks it again a moment later. Unfinished rows that are marked (or were
-- before) do not come back; ids that name nothing come back not at all.
--
-- A claim running meanwhile skips the pending rows this mark holds, and a
-- claim that comes back short tells its worker that the queue is empty: so
-- marking pending rows wakes their queues (`w:<queue>`) with its commit.
CREATE FUNCTION {{schema}}.await_outcomes(ids uuid[], p_channel text)
RETURNS TABLE (id uuid, busy boolean, task text, status text, attempts integer, result jsonb, error jsonb)
LANGUAGE plpgsql
SET enable_seqscan = off
AS $$
#variable_conflict use_column
DECLARE
  woken integer;
BEGIN
  WITH marked AS (
    UPDATE {{schema}}.executions e SET awaited = true
    WHERE e.id IN (
      SELECT x.id FROM {{schema}}.executions x
      WHERE x.id = ANY (ids) AND NOT x.awaited
      FOR UPDATE SKIP LOCKED
    )
    RETURNING e.queue, e.status
  ), signalled AS (
    SELECT pg_notify(p_channel, 'w:' || q.queue)
    FROM (SELECT DISTINCT m.queue FROM marked m WHERE m.status = 'pending') AS q
  )
  SELECT count(*) INTO woken FROM signalled;
  RETURN QUERY
    SELECT f.id, false, f.task, f.status, f.attempts, f.result, f.error
    FROM {{schema}}.finished_executions f
    WHERE f.id = ANY (ids)
    UNION ALL
    SELECT e.id, true, NULL::text, NULL::text, NULL::integer, NULL::jsonb, NULL::jsonb
    FROM {{schema}}.executions e
    WHERE e.id = ANY (ids) AND NOT e.awaited;
END
$$;
