-- Direct dispatch: an idle worker offers its free slots, and a single invoke
-- leases its execution to such a worker in the insert itself.
--
-- Waking an idle worker took the invoke's commit, its NOTIFY, then a claim
-- round trip (a second commit) before the handler started. A worker whose
-- claim came back short now records here, for a short while, how many slots
-- it has free, for which queue and tasks. A plain invoke (one execution, no
-- dedupe key, runnable now, small enough for a NOTIFY) takes one of those
-- slots in the same statement that inserts it: the row is inserted 'running',
-- leased to that worker with its first attempt counted, and the NOTIFY that
-- the commit delivers carries the execution itself ('d:' and a JSON object),
-- so the worker starts it without a claim.
--
-- An offer lasts two poll intervals (offered_until; each poll claims, which
-- renews it) and only while the worker's lease does. A worker that dies with
-- an offer standing may still be handed executions until its lease expires
-- (or the offer runs out), and those wait for lease recovery, as the ones it
-- had claimed do. A claim ends the offer (the upsert below sets it to 0), then
-- makes a new one if it came back short; a stopping worker withdraws it first.
--
-- `dispatched` counts the executions invokes have handed the worker since
-- its row was made. Its heartbeat reads it back: more than the worker has
-- received means a NOTIFY never arrived (a listener connection that died
-- without a word), and the worker gives back what is leased to it unseen. A
-- stopping worker's row goes only if the count is what it accounts for and no
-- offer stands (queries.ts `retireWorker`); otherwise it expires, and lease
-- recovery gives back what is leased to it.
ALTER TABLE {{schema}}.workers
  ADD COLUMN queue         text,
  ADD COLUMN tasks         text[],
  ADD COLUMN offered       integer NOT NULL DEFAULT 0,
  ADD COLUMN offered_until timestamptz,
  ADD COLUMN dispatched    bigint NOT NULL DEFAULT 0;

-- Only workers with slots on offer: an invoke looks here, and it stays small.
CREATE INDEX workers_offers_idx ON {{schema}}.workers (queue) WHERE offered > 0;

-- claim (0010), with the offer: p_offer slots free (0: none), for p_offer_ms.
-- p_received: the dispatches the worker has received; those counted beyond it
-- are on their way to it (their NOTIFY not yet there) and take slots too.
-- The first claim function stays for workers of the previous version during a
-- rolling upgrade (they make no offers).
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
  ON CONFLICT ON CONSTRAINT workers_pkey DO UPDATE SET expires_at = excluded.expires_at, offered = 0;

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
