-- Leases are held by workers, not by executions.
--
-- A claim wrote each leased row's expiry (lease_expires_at), and a partial
-- index on it let lease recovery find the expired ones. Every claimed row
-- paid an insert into that index, and every heartbeat rewrote each running
-- row (never a HOT update): dropping the index alone drained 100k queued
-- executions 9-17% faster on one worker process. Now each worker has one row
-- here, which its claims and heartbeats extend; a running execution names
-- only its worker (lease_owner), and its lease is that worker's.
--
-- A worker whose row expired is dead: lease recovery deletes the row and, in
-- the same transaction, makes that worker's executions runnable again (or
-- fails them when their attempts are used up). It finds them with a
-- sequential scan of the executions table, which only happens when a worker
-- died (or stopped holding work it could not write back). A worker that
-- stops cleanly with nothing leased deletes its own row.
--
-- Workers of an earlier version stop working against this schema: their
-- statements name the dropped column. Stop them before migrating.
CREATE TABLE {{schema}}.workers (
  id         uuid PRIMARY KEY,
  started_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL
);

-- What is leased now stays leased until the last of its worker's leases ends.
INSERT INTO {{schema}}.workers (id, expires_at)
  SELECT lease_owner, COALESCE(max(lease_expires_at), now()) FROM {{schema}}.executions
  WHERE status = 'running' AND lease_owner IS NOT NULL
  GROUP BY lease_owner;

DROP INDEX {{schema}}.executions_lease_idx;
ALTER TABLE {{schema}}.executions DROP COLUMN lease_expires_at;

-- claim (0008), extending the claiming worker's lease first. The upsert locks
-- the worker's row until the claim commits, and lease recovery skips rows it
-- cannot lock, so a worker is never declared dead while one of its claims
-- runs; a claim that comes after a recovery took its worker's row waits for
-- that recovery to commit, then starts a new row.
CREATE OR REPLACE FUNCTION {{schema}}.claim(queue_name text, task_names text[], n integer, p_owner uuid, p_lease_ms float8)
RETURNS TABLE (id uuid, task text, queue text, payload jsonb, attempts integer, max_attempts integer, parent_id uuid, fresh boolean)
LANGUAGE plpgsql
SET enable_sort = off
SET enable_bitmapscan = off
SET enable_seqscan = off
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
BEGIN
  INSERT INTO {{schema}}.workers (id, expires_at)
  VALUES (p_owner, now() + p_lease_ms * interval '1 millisecond')
  ON CONFLICT ON CONSTRAINT workers_pkey DO UPDATE SET expires_at = excluded.expires_at;

  RETURN QUERY
    WITH picked AS (
      SELECT e.id FROM {{schema}}.executions e
      WHERE e.status = 'pending' AND e.queue = queue_name AND e.task = ANY (task_names)
      ORDER BY e.priority DESC, e.run_at, e.id
      LIMIT n
      FOR UPDATE SKIP LOCKED
    ), claimed AS (
      UPDATE {{schema}}.executions e
      SET status = 'running', attempts = e.attempts + 1, lease_owner = p_owner,
          started_at = COALESCE(e.started_at, now()), wake = false, updated_at = now()
      WHERE e.id = ANY (ARRAY(SELECT p.id FROM picked p))
      RETURNING e.id, e.task, e.queue, e.payload, e.attempts, e.max_attempts, e.parent_id, (e.started_at = now()) AS fresh,
                e.priority, e.run_at
    )
    SELECT c.id, c.task, c.queue, c.payload, c.attempts, c.max_attempts, c.parent_id, c.fresh
    FROM claimed c
    ORDER BY c.priority DESC, c.run_at, c.id;
END
$$;

-- requeue (0004), without the dropped column.
--
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
CREATE OR REPLACE FUNCTION {{schema}}.requeue(p_owner uuid, p_ids uuid[], p_nexts text[], p_at_ms float8[], p_errors text[], p_channel text)
RETURNS TABLE (queue text, status text, run_at_ms float8)
LANGUAGE plpgsql
SET enable_seqscan = off
SET plan_cache_mode = force_generic_plan
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
        wake = false, lease_owner = NULL, updated_at = now()
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
