-- The claim must walk the claim index in order and stop after n rows. With
-- stale statistics (a backlog loaded faster than autovacuum analyzes it) the
-- planner may instead bitmap-scan every pending row and sort them all, which
-- costs about a second per claim at a million rows. Planned inside this
-- function, it cannot: sorts, bitmap scans and sequential scans are off here.
CREATE FUNCTION {{schema}}.claimable(queue_name text, task_names text[], n integer)
RETURNS SETOF uuid
LANGUAGE plpgsql
SET enable_sort = off
SET enable_bitmapscan = off
SET enable_seqscan = off
AS $$
BEGIN
  RETURN QUERY
    SELECT e.id FROM {{schema}}.executions e
    WHERE e.status = 'pending' AND e.queue = queue_name AND e.task = ANY (task_names)
    ORDER BY e.priority DESC, e.run_at, e.id
    LIMIT n
    FOR UPDATE SKIP LOCKED;
END
$$;
