-- A claim ends the worker's offer outright: offered_until too, not only the
-- count of slots (0011 set offered to 0 and left offered_until as it was).
--
-- Slots a worker's handlers free go back on its standing offer (queries.ts
-- `reoffer`, which adds them only while offered_until is in the future). A
-- claim that makes no new offer (it came back full, or its worker had no slot
-- to offer) must leave nothing for such a late `reoffer` to add to: with the
-- old offer's offered_until still ahead, one landing after that claim revived
-- the offer of a worker that was busy.
--
-- Same function and signature as 0011's; only the upsert changes.
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
