-- The per-batch functions keep one generic plan.
--
-- A statement inside a plpgsql function is a prepared statement: its first
-- five executions get custom plans (planned with the call's parameters), and
-- later ones keep getting custom plans whenever those looked cheaper than the
-- generic one. The settings of these functions (sequential scans off, and for
-- claim sorts and bitmap scans off) leave one plan shape for each statement
-- whatever the parameters, so a custom plan buys nothing, and planning costs
-- 0.3 to 0.5 ms a call: with small batches (24 workflows in flight), finish
-- was planned again on a third of its calls, and its planning took half as
-- long as its execution. Every invalidation (each autoanalyze of a busy
-- table) started the five custom plans over.
ALTER FUNCTION {{schema}}.claim(text, text[], integer, uuid, float8) SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION {{schema}}.finish(uuid, uuid[], text[], text[], text[], text) SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION {{schema}}.requeue(uuid, uuid[], text[], float8[], text[], text) SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION {{schema}}.record_steps(uuid, uuid[], text[], text[], text[], text[], integer[]) SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION {{schema}}.record_steps_careful(uuid, uuid[], text[], text[], text[], text[], integer[]) SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION {{schema}}.start_children(uuid, uuid[], text[], text[], integer[], text[], integer[], float8[], uuid[], text[], integer[], float8[]) SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION {{schema}}.await_outcomes(uuid[], text) SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION {{schema}}.outcomes(uuid[]) SET plan_cache_mode = force_generic_plan;
