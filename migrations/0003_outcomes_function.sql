-- Result waiters read outcomes by id many times a second. The statement is
-- prepared, and a connection's first executions can happen while
-- finished_executions is still nearly empty: the generic plan then made is a
-- sequential scan, kept until the table is next analyzed, and each call reads
-- the whole growing table (a fresh database reached half a millisecond per
-- call within seconds). Planned in here, the lookup can only use the primary key.
CREATE FUNCTION {{schema}}.outcomes(ids uuid[])
RETURNS TABLE (id uuid, task text, status text, attempts integer, result jsonb, error jsonb)
LANGUAGE plpgsql
STABLE
SET enable_seqscan = off
AS $$
BEGIN
  RETURN QUERY
    SELECT f.id, f.task, f.status, f.attempts, f.result, f.error
    FROM {{schema}}.finished_executions f
    WHERE f.id = ANY (ids);
END
$$;
