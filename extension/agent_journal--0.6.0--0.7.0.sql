-- agent_journal 0.6.0 -> 0.7.0: the change feed.
-- Upgrade script (not a test): lives in extension/, installed by `make install`.
\echo Use "ALTER EXTENSION agent_journal UPDATE TO '0.7.0'" to load this file. \quit

-- New functions get the EXECUTE grants of an existing one (whoever may
-- replay may follow the feed), with their initial privileges set as the
-- old one's, so the copied grants are ordinary grants a dump keeps.
CREATE FUNCTION agent_journal.carry_grants_070(src pg_catalog.regprocedure, dst pg_catalog.regprocedure)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
  g record;
  init pg_catalog.aclitem[];
BEGIN
  EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', dst);
  FOR g IN SELECT a.grantee, a.is_grantable
             FROM pg_catalog.pg_proc p, LATERAL pg_catalog.aclexplode(p.proacl) a
            WHERE p.oid OPERATOR(pg_catalog.=) src
              AND a.privilege_type OPERATOR(pg_catalog.=) 'EXECUTE'
              AND a.grantee OPERATOR(pg_catalog.<>) p.proowner LOOP
    EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO %s%s', dst,
      CASE WHEN g.grantee OPERATOR(pg_catalog.=) 0 THEN 'PUBLIC'
           ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(g.grantee)) END,
      CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
  END LOOP;
  SELECT i.initprivs INTO init FROM pg_catalog.pg_init_privs i
   WHERE i.objoid OPERATOR(pg_catalog.=) src
     AND i.classoid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
     AND i.objsubid OPERATOR(pg_catalog.=) 0;
  IF init IS NULL THEN
    DELETE FROM pg_catalog.pg_init_privs i
     WHERE i.objoid OPERATOR(pg_catalog.=) dst
       AND i.classoid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
       AND i.objsubid OPERATOR(pg_catalog.=) 0;
  ELSE
    UPDATE pg_catalog.pg_init_privs i SET initprivs = init
     WHERE i.objoid OPERATOR(pg_catalog.=) dst
       AND i.classoid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
       AND i.objsubid OPERATOR(pg_catalog.=) 0;
  END IF;
END
$fn$;

-- ------------------------------------------------------------ tables
-- Every append (append, append_batch, fork_agent) writes one row here in
-- its own transaction: the agent and the sequences it wrote. A tick (the
-- background worker, or read_feed / subscribe outside a transaction block)
-- moves the committed rows into feed and gives them positions. No index:
-- a tick takes them all.
CREATE TABLE agent_journal.feed_pending (
    agent_id       uuid        NOT NULL,
    first_sequence bigint      NOT NULL,
    last_sequence  bigint      NOT NULL,
    written_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    gap            text,       -- 'forgotten': forget_agent removed these entries
    owner          text        -- the forgotten agent's owner (who may see the gap)
);
COMMENT ON TABLE agent_journal.feed_pending IS
  'appends not yet in the feed: written by the journal''s writers, moved by feed ticks';

-- One row per range of one agent's sequences, in feed order. The entry
-- with sequence s has position last_position - (last_sequence - s).
CREATE TABLE agent_journal.feed (
    last_position  bigint      PRIMARY KEY,
    agent_id       uuid        NOT NULL,
    first_sequence bigint      NOT NULL,
    last_sequence  bigint      NOT NULL,
    written_at     timestamptz NOT NULL,
    gap            text,
    owner          text
);
CREATE INDEX feed_agent ON agent_journal.feed (agent_id);
COMMENT ON TABLE agent_journal.feed IS
  'the change feed: ranges of agents'' sequences with their positions';

-- The last position handed out; its row is locked by the tick running.
-- Created by the first tick (so a restored dump brings its own).
CREATE TABLE agent_journal.feed_state (
    id            boolean     PRIMARY KEY DEFAULT true CHECK (id),
    last_position bigint      NOT NULL DEFAULT 0,
    ticked_at     timestamptz
);
COMMENT ON TABLE agent_journal.feed_state IS 'the feed''s last position';

CREATE TABLE agent_journal.feed_subscriptions (
    consumer    text        PRIMARY KEY,
    owner       text        NOT NULL,  -- the role's exact name
    position    bigint      NOT NULL CHECK (position >= 0),
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    last_ack_at timestamptz
);
COMMENT ON TABLE agent_journal.feed_subscriptions IS
  'feed consumers and their acknowledged positions (subscribe, ack_feed)';

ALTER TABLE agent_journal.feed_pending ENABLE ROW LEVEL SECURITY;
ALTER TABLE agent_journal.feed ENABLE ROW LEVEL SECURITY;
ALTER TABLE agent_journal.feed_state ENABLE ROW LEVEL SECURITY;
ALTER TABLE agent_journal.feed_subscriptions ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON agent_journal.feed_pending, agent_journal.feed, agent_journal.feed_state,
  agent_journal.feed_subscriptions FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('agent_journal.feed_pending', '');
SELECT pg_catalog.pg_extension_config_dump('agent_journal.feed', '');
SELECT pg_catalog.pg_extension_config_dump('agent_journal.feed_state', '');
SELECT pg_catalog.pg_extension_config_dump('agent_journal.feed_subscriptions', '');

-- Entries from before the feed: one range per agent with live entries, in
-- the order of their first entry, so subscribe(..., true) sees them.
INSERT INTO agent_journal.feed (last_position, agent_id, first_sequence, last_sequence, written_at)
SELECT pg_catalog.sum(r.last OPERATOR(pg_catalog.-) r.first OPERATOR(pg_catalog.+) 1)
         OVER (ORDER BY r.at, r.agent_id)::bigint,
       r.agent_id, r.first, r.last, r.at
FROM (SELECT e.agent_id, pg_catalog.min(e.sequence) AS first, pg_catalog.max(e.sequence) AS last,
             pg_catalog.min(e.recorded_at) AS at
      FROM agent_journal.entries e GROUP BY e.agent_id) r;
INSERT INTO agent_journal.feed_state (id, last_position, ticked_at)
SELECT true, pg_catalog.max(f.last_position), pg_catalog.clock_timestamp()
FROM agent_journal.feed f HAVING pg_catalog.count(*) OPERATOR(pg_catalog.>) 0;

-- ------------------------------------------------------------ functions
CREATE FUNCTION agent_journal.subscribe(consumer text, from_beginning boolean DEFAULT false)
RETURNS bigint
AS 'MODULE_PATHNAME', 'aj_subscribe'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION agent_journal.subscribe(text, boolean) IS
  'create a named feed consumer (idempotent for its role); returns its position: 0 from the beginning, else now';

CREATE FUNCTION agent_journal.read_feed(consumer text, max_entries bigint DEFAULT 1000)
RETURNS TABLE ("position" bigint, agent_id uuid, sequence bigint, iteration integer, kind text,
               recorded_at timestamptz, event jsonb)
AS 'MODULE_PATHNAME', 'aj_read_feed'
LANGUAGE C VOLATILE PARALLEL UNSAFE ROWS 1000;
COMMENT ON FUNCTION agent_journal.read_feed(text, bigint) IS
  'the next entries after the consumer''s acknowledged position, in feed order; gap rows for removed entries';

CREATE FUNCTION agent_journal.ack_feed(consumer text, through_position bigint)
RETURNS void
AS 'MODULE_PATHNAME', 'aj_ack_feed'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION agent_journal.ack_feed(text, bigint) IS
  'store the consumer''s position (transactional); beyond the feed''s last position is an error';

CREATE FUNCTION agent_journal.unsubscribe(consumer text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'aj_unsubscribe'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION agent_journal.unsubscribe(text) IS 'drop a feed consumer; false if there was none';

CREATE FUNCTION agent_journal.feed_consumers_fn()
RETURNS TABLE (consumer text, owner text, "position" bigint, lag_entries bigint,
               lag_seconds double precision, last_ack_at timestamptz)
AS 'MODULE_PATHNAME', 'aj_feed_consumers'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION agent_journal.feed_consumers_fn() IS
  'the feed consumers the caller may use (all of them for admins), with their lag';
CREATE VIEW agent_journal.feed_consumers AS SELECT * FROM agent_journal.feed_consumers_fn();
COMMENT ON VIEW agent_journal.feed_consumers IS
  'feed consumers the caller may use: position, lag in entries and seconds, last acknowledgement';
REVOKE ALL ON agent_journal.feed_consumers FROM PUBLIC;

SELECT agent_journal.carry_grants_070('agent_journal.replay(uuid, bigint, bigint)', f)
FROM pg_catalog.unnest(ARRAY['agent_journal.subscribe(text, boolean)',
                             'agent_journal.read_feed(text, bigint)',
                             'agent_journal.ack_feed(text, bigint)',
                             'agent_journal.unsubscribe(text)',
                             'agent_journal.feed_consumers_fn()']::pg_catalog.regprocedure[]) f;
DROP FUNCTION agent_journal.carry_grants_070(pg_catalog.regprocedure, pg_catalog.regprocedure);

DO $grant$
DECLARE
  g record;
  init pg_catalog.aclitem[];
BEGIN
  -- Readers and writers see their consumers. As for the functions, the
  -- view's initial privileges stay what the REVOKE above left, so these
  -- grants are ordinary ones that a dump keeps.
  SELECT i.initprivs INTO init FROM pg_catalog.pg_init_privs i
   WHERE i.objoid OPERATOR(pg_catalog.=) 'agent_journal.feed_consumers'::pg_catalog.regclass
     AND i.classoid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
     AND i.objsubid OPERATOR(pg_catalog.=) 0;
  FOR g IN SELECT DISTINCT a.role FROM agent_journal.access_grants a
           WHERE a.access OPERATOR(pg_catalog.=) ANY (ARRAY['reader', 'writer', 'admin'])
             AND EXISTS (SELECT FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) a.role) LOOP
    EXECUTE pg_catalog.format('GRANT SELECT ON agent_journal.feed_consumers TO %I', g.role);
  END LOOP;
  UPDATE pg_catalog.pg_init_privs i SET initprivs = init
   WHERE i.objoid OPERATOR(pg_catalog.=) 'agent_journal.feed_consumers'::pg_catalog.regclass
     AND i.classoid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
     AND i.objsubid OPERATOR(pg_catalog.=) 0;
END
$grant$;

-- ------------------------------------------------------------ access levels
CREATE OR REPLACE FUNCTION agent_journal.access_privileges(access text)
RETURNS TABLE (object_type text, object_name text, privilege text)
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $fn$
  SELECT t.object_type, t.object_name, t.privilege FROM (VALUES
    ('writer', 'FUNCTION', 'agent_journal.append(uuid, integer, jsonb, bigint, text, bigint)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.append_batch(uuid, integer, jsonb[], bigint, text, bigint)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.replay(uuid, bigint, bigint)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.latest_sequence(uuid)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.next_sequence(uuid)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.last_completed_iteration(uuid)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.compact(uuid, bigint, bigint)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.forget_agent(uuid)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.claim_agent(uuid, text, interval)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.renew_lease(uuid, bigint, interval)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.release_agent(uuid, bigint)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.save_state(uuid, jsonb, bigint, bigint)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.fork_agent(uuid, bigint, uuid)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.set_retention(uuid, bigint, interval, boolean)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.resume(uuid, bigint)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.entry_by_key(uuid, text)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.replay_backward(uuid, bigint, bigint, text[])', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.observability(uuid, integer)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.ingest_snapshot(jsonb, text)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.counter_add(text, double precision, jsonb, text, jsonb)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.gauge_set(text, double precision, jsonb, text)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.gauge_add(text, double precision, jsonb, text)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.histogram_observe(text, double precision, jsonb, double precision[], text, jsonb)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.delete_series(text, jsonb)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.record_rejection(text, text, uuid)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.subscribe(text, boolean)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.read_feed(text, bigint)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.ack_feed(text, bigint)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.unsubscribe(text)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.feed_consumers_fn()', 'EXECUTE'),
    ('writer', 'TABLE', 'agent_journal.feed_consumers', 'SELECT'),
    ('reader', 'FUNCTION', 'agent_journal.replay(uuid, bigint, bigint)', 'EXECUTE'),
    ('reader', 'FUNCTION', 'agent_journal.resume(uuid, bigint)', 'EXECUTE'),
    ('reader', 'FUNCTION', 'agent_journal.entry_by_key(uuid, text)', 'EXECUTE'),
    ('reader', 'FUNCTION', 'agent_journal.replay_backward(uuid, bigint, bigint, text[])', 'EXECUTE'),
    ('reader', 'FUNCTION', 'agent_journal.latest_sequence(uuid)', 'EXECUTE'),
    ('reader', 'FUNCTION', 'agent_journal.next_sequence(uuid)', 'EXECUTE'),
    ('reader', 'FUNCTION', 'agent_journal.last_completed_iteration(uuid)', 'EXECUTE'),
    ('reader', 'FUNCTION', 'agent_journal.observability(uuid, integer)', 'EXECUTE'),
    ('reader', 'FUNCTION', 'agent_journal.agent_visible(uuid)', 'EXECUTE'),
    ('reader', 'FUNCTION', 'agent_journal.is_admin()', 'EXECUTE'),
    ('reader', 'FUNCTION', 'agent_journal.subscribe(text, boolean)', 'EXECUTE'),
    ('reader', 'FUNCTION', 'agent_journal.read_feed(text, bigint)', 'EXECUTE'),
    ('reader', 'FUNCTION', 'agent_journal.ack_feed(text, bigint)', 'EXECUTE'),
    ('reader', 'FUNCTION', 'agent_journal.unsubscribe(text)', 'EXECUTE'),
    ('reader', 'FUNCTION', 'agent_journal.feed_consumers_fn()', 'EXECUTE'),
    ('reader', 'TABLE', 'agent_journal.feed_consumers', 'SELECT'),
    ('reader', 'TABLE', 'agent_journal.entries', 'SELECT'),
    ('reader', 'TABLE', 'agent_journal.agent_state', 'SELECT'),
    ('reader', 'TABLE', 'agent_journal.agents', 'SELECT'),
    ('reader', 'TABLE', 'agent_journal.leases', 'SELECT'),
    ('reader', 'TABLE', 'agent_journal.lease_graph', 'SELECT'),
    ('reader', 'TABLE', 'agent_journal.saved_states', 'SELECT'),
    ('reader', 'TABLE', 'agent_journal.retention_policies', 'SELECT'),
    ('reader', 'TABLE', 'agent_journal.retention_settings', 'SELECT'),
    ('reader', 'FUNCTION', 'agent_journal.prometheus_text()', 'EXECUTE'),
    ('reader', 'FUNCTION', 'agent_journal.openmetrics_text()', 'EXECUTE'),
    ('reader', 'FUNCTION', 'agent_journal.otlp_json(text)', 'EXECUTE'),
    ('reader', 'FUNCTION', 'agent_journal.metric_samples_fn()', 'EXECUTE'),
    ('reader', 'TABLE', 'agent_journal.prometheus', 'SELECT'),
    ('reader', 'TABLE', 'agent_journal.openmetrics', 'SELECT'),
    ('reader', 'TABLE', 'agent_journal.metric_samples', 'SELECT'),
    ('scraper', 'FUNCTION', 'agent_journal.prometheus_text()', 'EXECUTE'),
    ('scraper', 'FUNCTION', 'agent_journal.openmetrics_text()', 'EXECUTE'),
    ('scraper', 'FUNCTION', 'agent_journal.otlp_json(text)', 'EXECUTE'),
    ('scraper', 'FUNCTION', 'agent_journal.metric_samples_fn()', 'EXECUTE'),
    ('scraper', 'TABLE', 'agent_journal.prometheus', 'SELECT'),
    ('scraper', 'TABLE', 'agent_journal.openmetrics', 'SELECT'),
    ('scraper', 'TABLE', 'agent_journal.metric_samples', 'SELECT')
  ) AS t(access, object_type, object_name, privilege)
  WHERE t.access = $1
  UNION ALL
  -- admin: every function and every table, view and sequence of the extension
  SELECT CASE WHEN d.classid = 'pg_proc'::regclass THEN 'FUNCTION' ELSE 'TABLE' END,
         CASE WHEN d.classid = 'pg_proc'::regclass THEN d.objid::regprocedure::text
              ELSE d.objid::regclass::text END,
         CASE WHEN d.classid = 'pg_proc'::regclass THEN 'EXECUTE'
              WHEN c.relkind = 'v' THEN 'SELECT'
              WHEN c.relkind = 'S' THEN 'USAGE, SELECT'
              ELSE 'SELECT, INSERT, UPDATE, DELETE' END
  FROM pg_depend d
  JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'agent_journal'
  LEFT JOIN pg_class c ON d.classid = 'pg_class'::regclass AND c.oid = d.objid
  WHERE $1 = 'admin' AND d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
    AND (d.classid = 'pg_proc'::regclass OR (d.classid = 'pg_class'::regclass AND c.relkind IN ('r', 'v', 'S')))
$fn$;
