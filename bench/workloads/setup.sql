-- Baseline objects for bench/run: plain tables of the journal's shape, the
-- classic PL/pgSQL event store, a one-row counter, a snapshot table, a
-- lease table, and bench.reset() which empties everything between rounds.
-- Run once per cluster after CREATE EXTENSION agent_journal (as superuser).
\set ON_ERROR_STOP 1
CREATE SCHEMA bench;

-- Workloads 1-3: agent_journal.entries' shape, sequence from one global bigserial.
CREATE TABLE bench.plain (
    agent_id    uuid        NOT NULL,
    sequence    bigserial   NOT NULL,
    iteration   integer     NOT NULL,
    kind        text        NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    event       jsonb       NOT NULL,
    PRIMARY KEY (agent_id, sequence)
);

-- Workload 4: the same rows as the replayed agent, loaded once.
CREATE TABLE bench.replay_plain (LIKE bench.plain INCLUDING ALL);
ALTER TABLE bench.replay_plain ALTER COLUMN sequence DROP DEFAULT;

-- Workload 5: snapshots stored as they come.
CREATE TABLE bench.snapshots (
    id          bigserial   PRIMARY KEY,
    service     text        NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    snapshot    jsonb       NOT NULL
);

-- Workload 6: one hot row.
CREATE TABLE bench.counter (id int PRIMARY KEY, v float8 NOT NULL);

-- Workload 10: a lease per agent, as plain SQL would keep it.
CREATE SEQUENCE bench.lease_tokens;
CREATE TABLE bench.leases (
    agent_id   uuid        PRIMARY KEY,
    worker     text        NOT NULL,
    lease      bigint      NOT NULL,
    expires_at timestamptz NOT NULL
);

-- Workload 8: the classic event store: lock the stream, max(position)+1, insert.
CREATE TABLE bench.es_events (
    stream_id  text        NOT NULL,
    position   bigint      NOT NULL,
    type       text        NOT NULL,
    data       jsonb       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream_id, position)
);
CREATE FUNCTION bench.es_append(p_stream text, p_data jsonb) RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_pos bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext(p_stream));
    SELECT coalesce(max(position), 0) + 1 INTO v_pos
      FROM bench.es_events WHERE stream_id = p_stream;
    INSERT INTO bench.es_events (stream_id, position, type, data)
    VALUES (p_stream, v_pos, coalesce(p_data->>'type', 'unknown'), p_data);
    RETURN v_pos;
END $$;

-- Workload 4: temp blocks a query writes (tuplestore spills), from the
-- top plan node of EXPLAIN (ANALYZE, BUFFERS) (node counts include children).
CREATE FUNCTION bench.temp_written_blocks(q text) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    j json;
BEGIN
    EXECUTE 'EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ' || q INTO j;
    RETURN coalesce((j -> 0 -> 'Plan' ->> 'Temp Written Blocks')::bigint, 0);
END $$;

-- Rows the extension seeds into its tables (its own metric families) are
-- kept here and put back by bench.reset().
DO $$
BEGIN
    IF to_regclass('agent_journal.metric_families') IS NOT NULL THEN
        CREATE TABLE bench.seed_families AS SELECT * FROM agent_journal.metric_families;
    END IF;
END $$;

-- Empties the write targets of both sides (journal, metrics, baselines,
-- PgQ event tables) so every round starts from the same state. Leaves
-- bench.replay_plain alone (workload 4 loads it once).
CREATE FUNCTION bench.reset() RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    t text;
    since bigint;
BEGIN
    -- the journal counters' start (0.6.0), as a fresh install has it
    IF to_regclass('agent_journal.tallies') IS NOT NULL THEN
        SELECT value INTO since FROM agent_journal.tallies WHERE name = 'journal_since' AND slot = 0;
    END IF;
    FOR t IN
        SELECT format('%I.%I', schemaname, tablename) FROM pg_tables
        WHERE schemaname = 'agent_journal'
           OR (schemaname = 'bench' AND tablename IN ('plain', 'snapshots', 'counter', 'es_events', 'leases'))
    LOOP
        EXECUTE 'TRUNCATE ' || t || ' CASCADE';
    END LOOP;
    IF to_regclass('pgq.event_template') IS NOT NULL THEN
        TRUNCATE pgq.event_template;   -- and every queue's event tables (children)
    END IF;
    IF to_regclass('bench.seed_families') IS NOT NULL THEN
        INSERT INTO agent_journal.metric_families SELECT * FROM bench.seed_families;
    END IF;
    INSERT INTO bench.counter VALUES (1, 0);
    -- the feed's marker (0.10.0), as a fresh install has it: emptied,
    -- the next tick would take it for a crash and rebuild its notes
    IF to_regclass('agent_journal.feed_appends') IS NOT NULL THEN
        INSERT INTO agent_journal.feed_appends (agent_id, first_sequence, last_sequence)
        VALUES ('00000000-0000-0000-0000-000000000000', 0, 0);
    END IF;
    IF since IS NOT NULL THEN
        INSERT INTO agent_journal.tallies (name, slot, value) VALUES ('journal_since', 0, since);
    END IF;
END $$;
