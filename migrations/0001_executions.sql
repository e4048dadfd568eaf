-- The hot table holds only unfinished executions. Finished ones move to
-- finished_executions in the same statement that finishes them, so the claim
-- path never walks over completed rows or their dead tuples.
--
-- status:
--   pending    runnable now (the only state in the claim index)
--   scheduled  runnable at run_at (delayed invokes, retry backoff, durable sleeps);
--              promoted to pending by promote_due, kept out of the claim index so
--              a million sleepers cost the claim scan nothing
--   running    leased by a worker until lease_expires_at
--   waiting    suspended (durable sleep, children, events) until run_at or until
--              woken by the writer of what it waits for, whichever comes first
CREATE TABLE {{schema}}.executions (
  id               uuid PRIMARY KEY,
  task             text        NOT NULL,
  queue            text        NOT NULL,
  status           text        NOT NULL CHECK (status IN ('pending', 'scheduled', 'running', 'waiting')),
  priority         integer     NOT NULL DEFAULT 0,
  run_at           timestamptz NOT NULL DEFAULT now(),
  payload          jsonb       NOT NULL,
  attempts         integer     NOT NULL DEFAULT 0,
  max_attempts     integer     NOT NULL,
  lease_owner      uuid,
  lease_expires_at timestamptz,
  -- set by whoever finishes something this execution waits for; a suspend that
  -- finds it set goes back to pending instead of waiting (no lost wake-ups)
  wake             boolean     NOT NULL DEFAULT false,
  cancel_reason    text,
  dedupe_key       text,
  parent_id        uuid,
  parent_step      text,
  last_error       jsonb,
  created_at       timestamptz NOT NULL DEFAULT now(),
  started_at       timestamptz,
  updated_at       timestamptz NOT NULL DEFAULT now()
) WITH (fillfactor = 70);

-- Claim order: highest priority first, then oldest run_at. Partial: only
-- runnable rows are in it, so its size is the backlog, not the history.
CREATE INDEX executions_claim_idx ON {{schema}}.executions (queue, priority DESC, run_at, id)
  WHERE status = 'pending';
-- Due-time index of everything that becomes runnable at run_at; promote_due
-- walks it from the oldest, so it reads only what is due.
CREATE INDEX executions_due_idx ON {{schema}}.executions (run_at)
  WHERE status IN ('scheduled', 'waiting');
CREATE INDEX executions_lease_idx ON {{schema}}.executions (lease_expires_at)
  WHERE status = 'running';
-- Dedupe keys are unique among unfinished executions of a task.
CREATE UNIQUE INDEX executions_dedupe_idx ON {{schema}}.executions (task, dedupe_key)
  WHERE dedupe_key IS NOT NULL;
CREATE INDEX executions_parent_idx ON {{schema}}.executions (parent_id)
  WHERE parent_id IS NOT NULL;

CREATE TABLE {{schema}}.finished_executions (
  id            uuid PRIMARY KEY,
  task          text        NOT NULL,
  queue         text        NOT NULL,
  status        text        NOT NULL CHECK (status IN ('completed', 'failed', 'cancelled')),
  priority      integer     NOT NULL,
  payload       jsonb       NOT NULL,
  result        jsonb,
  error         jsonb,
  attempts      integer     NOT NULL,
  max_attempts  integer     NOT NULL,
  dedupe_key    text,
  parent_id     uuid,
  parent_step   text,
  created_at    timestamptz NOT NULL,
  started_at    timestamptz,
  finished_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX finished_executions_parent_idx ON {{schema}}.finished_executions (parent_id)
  WHERE parent_id IS NOT NULL;

-- Durable operation records: one row per (execution, name), first writer wins.
--   kind 'step'  value = encoded success, or error = encoded declared failure
--   kind 'sleep' value = wake time (epoch ms)
--   kind 'child' value = {"id": child execution id, "deadline": epoch ms or null}
CREATE TABLE {{schema}}.steps (
  execution_id uuid        NOT NULL,
  name         text        NOT NULL,
  kind         text        NOT NULL CHECK (kind IN ('step', 'sleep', 'child')),
  value        jsonb,
  error        jsonb,
  attempt      integer     NOT NULL,
  recorded_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (execution_id, name)
);
