-- agent_journal 0.1.0: the durable execution journal.
-- Install script (not a test): lives in extension/, installed by `make install`.
\echo Use "CREATE EXTENSION agent_journal" to load this file. \quit

-- The schema is created by CREATE EXTENSION (control file: schema = agent_journal).
REVOKE ALL ON SCHEMA agent_journal FROM PUBLIC;

-- One row per journal entry. The primary key is the per-agent order; the
-- journal assigns `sequence` under a per-agent transaction-scoped lock.
CREATE TABLE agent_journal.entries (
    agent_id    uuid        NOT NULL,
    sequence    bigint      NOT NULL,  -- > 0, checked by append (a CHECK
    iteration   integer     NOT NULL,  -- >= 0, here would be re-parsed per insert)
    kind        text        NOT NULL,
    recorded_at timestamptz NOT NULL,
    event       jsonb       NOT NULL,
    PRIMARY KEY (agent_id, sequence)
);
COMMENT ON TABLE agent_journal.entries IS
  'journal entries; write them only through agent_journal.append / append_batch';

-- Per-agent state that must outlive the entries: where compaction stopped
-- (so sequence numbers are never reused) and the iteration high-water mark
-- of compacted entries. A row exists for every agent that ever appended.
CREATE TABLE agent_journal.agent_state (
    agent_id            uuid        PRIMARY KEY,
    created_at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    compacted_through   bigint      NOT NULL DEFAULT 0 CHECK (compacted_through >= 0),
    compacted_iteration integer     NOT NULL DEFAULT 0 CHECK (compacted_iteration >= 0),
    owner               regrole     -- bind_agent (0.2.0); NULL: not bound to a tenant
);
COMMENT ON TABLE agent_journal.agent_state IS
  'per-agent state: compaction point and iteration high-water mark of compacted entries';

-- Idempotency keys survive compaction; forget_agent removes them.
CREATE TABLE agent_journal.idempotency_keys (
    agent_id        uuid        NOT NULL,
    idempotency_key text        NOT NULL,
    first_sequence  bigint      NOT NULL,
    last_sequence   bigint      NOT NULL,
    request_hash    bytea       NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (agent_id, idempotency_key)
);
COMMENT ON TABLE agent_journal.idempotency_keys IS
  'idempotency keys of appends, with the sequences they produced and a hash of the request';

-- pg_dump keeps users' data in extension tables.
SELECT pg_catalog.pg_extension_config_dump('agent_journal.entries', '');
SELECT pg_catalog.pg_extension_config_dump('agent_journal.agent_state', '');
SELECT pg_catalog.pg_extension_config_dump('agent_journal.idempotency_keys', '');

CREATE FUNCTION agent_journal.append(
    agent_id uuid, iteration integer, event jsonb,
    expected_sequence bigint DEFAULT NULL, idempotency_key text DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'aj_append'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION agent_journal.append(uuid, integer, jsonb, bigint, text) IS
  'append one event to an agent''s journal; returns its sequence';

CREATE FUNCTION agent_journal.append_batch(
    agent_id uuid, iteration integer, events jsonb[],
    expected_sequence bigint DEFAULT NULL, idempotency_key text DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'aj_append_batch'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION agent_journal.append_batch(uuid, integer, jsonb[], bigint, text) IS
  'append events in order with consecutive sequences, all or nothing; returns the last sequence';

CREATE FUNCTION agent_journal.replay(
    agent_id uuid, from_sequence bigint DEFAULT 1, max_entries bigint DEFAULT NULL)
RETURNS TABLE (sequence bigint, iteration integer, kind text,
               recorded_at timestamptz, event jsonb)
AS 'MODULE_PATHNAME', 'aj_replay'
LANGUAGE C STABLE PARALLEL SAFE ROWS 1000;
COMMENT ON FUNCTION agent_journal.replay(uuid, bigint, bigint) IS
  'entries of an agent with sequence >= from_sequence, in order, at most max_entries';

CREATE FUNCTION agent_journal.latest_sequence(agent_id uuid)
RETURNS bigint
AS 'MODULE_PATHNAME', 'aj_latest_sequence'
LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION agent_journal.latest_sequence(uuid) IS
  'highest sequence ever assigned to the agent (0 if none); compaction does not lower it';

CREATE FUNCTION agent_journal.next_sequence(agent_id uuid)
RETURNS bigint
AS 'MODULE_PATHNAME', 'aj_next_sequence'
LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION agent_journal.next_sequence(uuid) IS
  'latest_sequence + 1: the sequence the next append will get if nothing else appends first';

CREATE FUNCTION agent_journal.last_completed_iteration(agent_id uuid)
RETURNS integer
AS 'MODULE_PATHNAME', 'aj_last_completed_iteration'
LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION agent_journal.last_completed_iteration(uuid) IS
  'highest iteration ever journaled for the agent (0 if none); compaction does not lower it';

CREATE FUNCTION agent_journal.compact(agent_id uuid, through_sequence bigint DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'aj_compact'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION agent_journal.compact(uuid, bigint) IS
  'delete the agent''s entries with sequence <= through_sequence (all when NULL); returns how many';

CREATE FUNCTION agent_journal.forget_agent(agent_id uuid)
RETURNS bigint
AS 'MODULE_PATHNAME', 'aj_forget_agent'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION agent_journal.forget_agent(uuid) IS
  'remove everything about an agent (entries, keys, state); returns the number of entries removed';

-- One row per known agent. Costs two index probes per agent, never a scan
-- of all entries: sequences are gap-free and compaction removes a prefix.
CREATE VIEW agent_journal.agents AS
SELECT s.agent_id,
       GREATEST(COALESCE(l.sequence, 0), s.compacted_through) AS latest_sequence,
       COALESCE(l.sequence - f.sequence + 1, 0)              AS live_entries,
       s.compacted_through,
       f.recorded_at                                          AS first_recorded_at,
       l.recorded_at                                          AS last_recorded_at
FROM agent_journal.agent_state s
LEFT JOIN LATERAL (SELECT e.sequence, e.recorded_at FROM agent_journal.entries e
                   WHERE e.agent_id = s.agent_id ORDER BY e.sequence DESC LIMIT 1) l ON true
LEFT JOIN LATERAL (SELECT e.sequence, e.recorded_at FROM agent_journal.entries e
                   WHERE e.agent_id = s.agent_id ORDER BY e.sequence ASC LIMIT 1) f ON true;
COMMENT ON VIEW agent_journal.agents IS
  'one row per agent: latest sequence, live entries, compaction point, first and last live entry times';

-- Nothing is usable by PUBLIC until granted (see README, Privileges).
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA agent_journal FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA agent_journal FROM PUBLIC;
