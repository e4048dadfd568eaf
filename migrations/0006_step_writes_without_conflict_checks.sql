-- Step writes take a plain INSERT when nothing conflicts.
--
-- `record_steps` (0004) inserted with ON CONFLICT DO NOTHING, so that a step
-- another writer stored first (a worker whose lease ran out, racing the one
-- that took the execution over) is answered with the stored record. Each row
-- then paid a speculative insertion: an extra probe of the primary key and an
-- extra WAL record to confirm the row. A conflict is rare (an attempt replays
-- what it loaded at its start and writes only the rest), so the write now
-- tries a plain INSERT first and falls back to the previous statement, renamed
-- `record_steps_careful`, only when the plain one cannot answer the batch:
--
-- - a row conflicts (unique_violation: the attempt's subtransaction rolls
--   back, nothing of it is kept or returned);
-- - an execution of the batch has a cancel requested (the careful statement
--   answers its recorded steps and refuses new ones);
-- - nothing in the batch is leased to the writer (it answers nothing either).
--
-- The rows come back only after the INSERT has run to its end (the count
-- below), so a conflict on a later row cannot leave earlier rows returned.
-- Same signature and answers: workers of the previous version, still running
-- during a rolling upgrade, get the same results from it.

ALTER FUNCTION {{schema}}.record_steps(uuid, uuid[], text[], text[], text[], text[], integer[]) RENAME TO record_steps_careful;

CREATE FUNCTION {{schema}}.record_steps(p_owner uuid, p_ids uuid[], p_names text[], p_kinds text[], p_values text[], p_errors text[], p_attempts integer[])
RETURNS TABLE (ord integer, kind text, value jsonb, error jsonb, attempt integer, recorded_ms float8, cancel_reason text)
LANGUAGE plpgsql
SET enable_seqscan = off
AS $$
#variable_conflict use_column
DECLARE
  answered bigint;
BEGIN
  BEGIN
    RETURN QUERY
      WITH input AS (
        SELECT * FROM unnest(p_ids, p_names, p_kinds, p_values, p_errors, p_attempts) WITH ORDINALITY
          AS t(execution_id, name, kind, value, error, attempt, ord)
      ), owned AS (
        SELECT i.*, e.cancel_reason FROM input i JOIN {{schema}}.executions e
          ON e.id = i.execution_id AND e.lease_owner = p_owner AND e.status = 'running'
        WHERE e.id = ANY (p_ids)
      ), cancelled AS (
        SELECT 1 FROM owned o WHERE o.cancel_reason IS NOT NULL LIMIT 1
      ), inserted AS (
        INSERT INTO {{schema}}.steps (execution_id, name, kind, value, error, attempt)
        SELECT o.execution_id, o.name, o.kind, o.value::jsonb, o.error::jsonb, o.attempt FROM owned o
        WHERE NOT EXISTS (SELECT 1 FROM cancelled)
        RETURNING 1
      )
      SELECT o.ord::int, NULL::text, NULL::jsonb, NULL::jsonb, NULL::int,
             (extract(epoch FROM now()) * 1000)::float8, NULL::text
      FROM owned o
      WHERE NOT EXISTS (SELECT 1 FROM cancelled) AND (SELECT count(*) FROM inserted) >= 0;
    GET DIAGNOSTICS answered = ROW_COUNT;
    IF answered > 0 THEN
      RETURN;
    END IF;
  EXCEPTION WHEN unique_violation THEN
    NULL;
  END;
  RETURN QUERY SELECT * FROM {{schema}}.record_steps_careful(p_owner, p_ids, p_names, p_kinds, p_values, p_errors, p_attempts);
END
$$;
