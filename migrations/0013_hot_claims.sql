-- Claims are HOT updates.
--
-- A claim turns pending rows into running ones. While `status` was named by
-- an index (the claim index's and the due-time index's predicates), that
-- update could never be HOT (heap-only): every claimed row got a new version
-- on another page and a new primary-key entry, about 7 µs of a claim's 9 per
-- row. Now the indexes name `runnable` instead, a stored column computed from
-- `status` that a claim leaves as it was (pending and running are both
-- runnable), so no indexed column changes and the new version stays on its
-- page with no index entry. Moves in and out of the scheduled and waiting
-- states change `runnable` and update the indexes as before.
--
-- The claim index now also holds running rows (their entries point at the
-- pending version they were claimed from); the claim reads `status` to pass
-- over them. They leave it when they finish (moved out of this table) or
-- suspend.
--
-- A HOT update needs room on its page for the new version. Claims take the
-- rows a page was filled with in one statement, so a page filled to more than
-- about half cannot hold all their new versions: at fillfactor 70 about half
-- the claims were HOT (and the rest cost more than before, since they now go
-- into the claim index too), at 50 nine in ten, at 40 all. Claims and
-- finishes of 100k queued rows, back to back, cost Postgres 25% less CPU per
-- row at fillfactor 40 than the claim before this one.
ALTER TABLE {{schema}}.executions SET (fillfactor = 40);

ALTER TABLE {{schema}}.executions
  ADD COLUMN runnable boolean GENERATED ALWAYS AS (status IN ('pending', 'running')) STORED;

DROP INDEX {{schema}}.executions_claim_idx;
CREATE INDEX executions_claim_idx ON {{schema}}.executions (queue, priority DESC, run_at, id)
  WHERE runnable;

DROP INDEX {{schema}}.executions_due_idx;
CREATE INDEX executions_due_idx ON {{schema}}.executions (run_at)
  WHERE NOT runnable;

-- claim (0012), reading the claim index through its new predicate and
-- passing over the running rows in it. Same signature.
CREATE OR REPLACE FUNCTION {{schema}}.claim(queue_name text, task_names text[], n integer, p_owner uuid, p_lease_ms float8,
                                            p_offer integer, p_offer_ms float8, p_received bigint)
RETURNS TABLE (id uuid, task text, queue text, payload jsonb, attempts integer, max_attempts integer, parent_id uuid, fresh boolean)
LANGUAGE plpgsql
SET enable_sort = off
SET enable_bitmapscan = off
SET enable_seqscan = off
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
DECLARE
  taken integer;
BEGIN
  INSERT INTO {{schema}}.workers (id, expires_at)
  VALUES (p_owner, now() + p_lease_ms * interval '1 millisecond')
  ON CONFLICT ON CONSTRAINT workers_pkey DO UPDATE SET expires_at = excluded.expires_at, offered = 0, offered_until = NULL;

  RETURN QUERY
    WITH picked AS (
      SELECT e.id FROM {{schema}}.executions e
      WHERE e.runnable AND e.status = 'pending' AND e.queue = queue_name AND e.task = ANY (task_names)
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

  -- Came back short (the queue looked empty) with slots still free: offer them.
  GET DIAGNOSTICS taken = ROW_COUNT;
  IF taken < n AND p_offer > taken THEN
    UPDATE {{schema}}.workers w
    SET offered = greatest(p_offer - taken - greatest(w.dispatched - p_received, 0), 0),
        offered_until = now() + p_offer_ms * interval '1 millisecond',
        queue = queue_name, tasks = task_names
    WHERE w.id = p_owner;
  END IF;
END
$$;

-- claim without an offer (0010), for workers of the version before 0011
-- during a rolling upgrade: now the claim above with no offer (such a worker
-- never makes one, so resetting its row's offer changes nothing). Same
-- signature and settings.
CREATE OR REPLACE FUNCTION {{schema}}.claim(queue_name text, task_names text[], n integer, p_owner uuid, p_lease_ms float8)
RETURNS TABLE (id uuid, task text, queue text, payload jsonb, attempts integer, max_attempts integer, parent_id uuid, fresh boolean)
LANGUAGE sql
SET enable_sort = off
SET enable_bitmapscan = off
SET enable_seqscan = off
SET plan_cache_mode = force_generic_plan
AS $$
  SELECT * FROM {{schema}}.claim(queue_name, task_names, n, p_owner, p_lease_ms, 0, 0, 0)
$$;

-- claimable (0002) was read by workers from before 0004, none of which can run
-- against a schema past 0010; with the claim index's new predicate it could
-- no longer use that index.
DROP FUNCTION {{schema}}.claimable(text, text[], integer);
