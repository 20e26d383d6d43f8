-- The change feed (0.7.0): subscribe, read_feed, ack_feed, unsubscribe,
-- feed_consumers. Positions are compared relative to the consumer's start
-- (other tests append too). Every statement here runs outside a
-- transaction block unless it says BEGIN, so read_feed ticks itself.
\set VERBOSITY terse
CREATE FUNCTION public.aj_feed_err(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN EXECUTE q; RETURN 'ok';
EXCEPTION WHEN OTHERS THEN RETURN SQLSTATE || ': ' || SQLERRM; END $$;
GRANT EXECUTE ON FUNCTION public.aj_feed_err(text) TO PUBLIC;
SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_aj_feed_alice, regress_aj_feed_bob, regress_aj_feed_scraper,
  regress_aj_feed_admin, regress_aj_feed_nobody;
RESET client_min_messages;
CREATE ROLE regress_aj_feed_alice;
CREATE ROLE regress_aj_feed_bob;
CREATE ROLE regress_aj_feed_scraper;
CREATE ROLE regress_aj_feed_admin;
CREATE ROLE regress_aj_feed_nobody;
SELECT agent_journal.grant_access('regress_aj_feed_alice', 'writer');
SELECT agent_journal.grant_access('regress_aj_feed_bob', 'reader');
SELECT agent_journal.grant_access('regress_aj_feed_scraper', 'scraper');
SELECT agent_journal.grant_access('regress_aj_feed_admin', 'admin');

-- arguments
SELECT aj_feed_err($$SELECT agent_journal.subscribe(NULL)$$);
SELECT aj_feed_err($$SELECT agent_journal.subscribe('')$$);
SELECT aj_feed_err($$SELECT agent_journal.subscribe(repeat('c', 201))$$);
SELECT aj_feed_err($$SELECT * FROM agent_journal.read_feed('no_such_consumer')$$);
SELECT aj_feed_err($$SELECT agent_journal.ack_feed('no_such_consumer', 1)$$);
SELECT aj_feed_err($$SELECT agent_journal.ack_feed(NULL, 1)$$);
SELECT agent_journal.unsubscribe('no_such_consumer');

-- who may: readers and writers subscribe; scrapers and roles without
-- access may not
SET ROLE regress_aj_feed_nobody;
SELECT aj_feed_err($$SELECT agent_journal.subscribe('nobody_feed')$$);
SELECT aj_feed_err($$SELECT * FROM agent_journal.feed_consumers$$);
SET ROLE regress_aj_feed_scraper;
SELECT aj_feed_err($$SELECT agent_journal.subscribe('scraper_feed')$$);
RESET ROLE;

-- a consumer from "now" sees only what comes after; subscribing again is
-- idempotent for the same role and returns the stored position
SELECT agent_journal.append('00000000-0000-0000-0000-0000000f0001', 0, '{"type": "Before"}');
SET ROLE regress_aj_feed_alice;
SELECT agent_journal.subscribe('alice_feed') AS start \gset
SELECT agent_journal.subscribe('alice_feed') = :start AS same_position;
SELECT count(*) AS nothing_yet FROM agent_journal.read_feed('alice_feed');
SELECT agent_journal.append('00000000-0000-0000-0000-0000000f0001', 1, '{"type": "A1"}');
SELECT agent_journal.append_batch('00000000-0000-0000-0000-0000000f0002', 1,
  ARRAY['{"type": "B1"}', '{"type": "B2"}']::jsonb[]);
SELECT agent_journal.append('00000000-0000-0000-0000-0000000f0001', 2, '{"type": "A2"}');
-- feed order: per agent in sequence order, positions strictly increasing,
-- one position per entry
SELECT position - :start AS pos, agent_id, sequence, iteration, kind, event
FROM agent_journal.read_feed('alice_feed');
-- reading does not advance; max_entries limits
SELECT position - :start AS pos, kind FROM agent_journal.read_feed('alice_feed', 2);
SELECT count(*) AS none FROM agent_journal.read_feed('alice_feed', 0);
SELECT aj_feed_err($$SELECT * FROM agent_journal.read_feed('alice_feed', -1)$$);
-- ack: transactional, never backwards, never beyond the feed
BEGIN;
SELECT agent_journal.ack_feed('alice_feed', :start + 2);
ROLLBACK;
SELECT position - :start AS pos, kind FROM agent_journal.read_feed('alice_feed', 1);
SELECT agent_journal.ack_feed('alice_feed', :start + 2);
SELECT position - :start AS pos, kind FROM agent_journal.read_feed('alice_feed');
SELECT agent_journal.ack_feed('alice_feed', :start + 1);  -- below: nothing happens
SELECT position - :start AS position, lag_entries FROM agent_journal.feed_consumers
WHERE consumer = 'alice_feed';
SELECT regexp_replace(aj_feed_err(format('SELECT agent_journal.ack_feed(%L, %s)', 'alice_feed', :start + 1000000)),
  'position \d+', 'position N', 'g') AS beyond;
SELECT agent_journal.ack_feed('alice_feed', :start + 4);
SELECT count(*) AS drained FROM agent_journal.read_feed('alice_feed');
SELECT lag_entries, lag_seconds = 0 AS no_lag FROM agent_journal.feed_consumers WHERE consumer = 'alice_feed';

-- uncommitted and rolled-back appends are never delivered; in a
-- transaction block read_feed does not tick (the worker, or a read
-- outside one, does)
BEGIN;
SELECT agent_journal.append('00000000-0000-0000-0000-0000000f0001', 3, '{"type": "RolledBack"}');
SELECT count(*) AS own_uncommitted FROM agent_journal.read_feed('alice_feed');
ROLLBACK;
SELECT count(*) AS rolled_back FROM agent_journal.read_feed('alice_feed');
SELECT agent_journal.append('00000000-0000-0000-0000-0000000f0001', 3, '{"type": "A3"}');
BEGIN;
SELECT count(*) AS not_ticked_in_block FROM agent_journal.read_feed('alice_feed');
COMMIT;
SELECT position - :start AS pos, sequence, kind FROM agent_journal.read_feed('alice_feed');
SELECT agent_journal.ack_feed('alice_feed', :start + 5);

-- another role: the name is taken (42710); it may not read, acknowledge
-- or drop alice's consumer (42501), nor see it
SET ROLE regress_aj_feed_bob;
SELECT aj_feed_err($$SELECT agent_journal.subscribe('alice_feed')$$);
SELECT aj_feed_err($$SELECT * FROM agent_journal.read_feed('alice_feed')$$);
SELECT aj_feed_err($$SELECT agent_journal.ack_feed('alice_feed', 1)$$);
SELECT aj_feed_err($$SELECT agent_journal.unsubscribe('alice_feed')$$);
SELECT count(*) AS bob_sees FROM agent_journal.feed_consumers;
-- a reader subscribes from the beginning: it gets every live entry
SELECT agent_journal.subscribe('bob_feed', true);
SELECT count(*) FILTER (WHERE kind = 'A1') AS a1, count(*) FILTER (WHERE kind = 'Before') AS before
FROM agent_journal.read_feed('bob_feed', 100000);
RESET ROLE;
-- an admin may read and see every consumer
SET ROLE regress_aj_feed_admin;
SELECT count(*) AS admin_reads FROM agent_journal.read_feed('alice_feed');
SELECT consumer, owner FROM agent_journal.feed_consumers
WHERE consumer IN ('alice_feed', 'bob_feed') ORDER BY 1;
RESET ROLE;

-- tenants: an agent bound to alice is not in bob's feed
SET ROLE regress_aj_feed_bob;
SELECT agent_journal.subscribe('bob_now') AS bob_start \gset
RESET ROLE;
SELECT agent_journal.bind_agent('00000000-0000-0000-0000-0000000f0003', 'regress_aj_feed_alice'::name);
SET ROLE regress_aj_feed_alice;
SELECT agent_journal.append('00000000-0000-0000-0000-0000000f0003', 0, '{"type": "Private"}');
SELECT agent_journal.append('00000000-0000-0000-0000-0000000f0002', 2, '{"type": "Public"}');
SELECT agent_id, kind FROM agent_journal.read_feed('alice_feed');
SET ROLE regress_aj_feed_bob;
SELECT agent_id, kind FROM agent_journal.read_feed('bob_now');
RESET ROLE;
-- a long run of rows bob may not see (1100 agents of another role; alice
-- may not see them either) never stalls his consumer: skipped, however
-- many, to the next one he may
SELECT agent_journal.ack_feed('bob_now', (SELECT max(position) FROM agent_journal.read_feed('bob_now')));
SELECT count(*) AS bound FROM (
  SELECT agent_journal.bind_agent(('00000000-0000-0000-0000-0000001' || lpad(i::text, 5, '0'))::uuid,
                                  'regress_aj_feed_nobody'::name),
         agent_journal.append(('00000000-0000-0000-0000-0000001' || lpad(i::text, 5, '0'))::uuid, 0, '{"type": "Hidden"}')
  FROM generate_series(1, 1100) i) x;
SELECT agent_journal.append('00000000-0000-0000-0000-0000000f0002', 3, '{"type": "PublicAfter"}');
SET ROLE regress_aj_feed_bob;
SELECT agent_id, kind FROM agent_journal.read_feed('bob_now', 1);
RESET ROLE;

-- compaction and forget_agent never wait for consumers; a consumer that
-- had not acknowledged the removed entries gets one gap row per agent
-- instead (reason compacted / forgotten), and a forgotten agent's new
-- entries (sequences restart) come after it
SET ROLE regress_aj_feed_alice;
SELECT agent_journal.subscribe('alice_gaps') AS gstart \gset
SELECT agent_journal.append('00000000-0000-0000-0000-0000000f0004', i, jsonb_build_object('type', 'C' || i))
FROM generate_series(1, 5) i;
SELECT agent_journal.append('00000000-0000-0000-0000-0000000f0005', i, jsonb_build_object('type', 'F' || i))
FROM generate_series(1, 3) i;
SELECT count(*) AS ticked FROM agent_journal.read_feed('alice_gaps');
SELECT agent_journal.compact('00000000-0000-0000-0000-0000000f0004', 4);
SELECT agent_journal.forget_agent('00000000-0000-0000-0000-0000000f0005');
SELECT agent_journal.append('00000000-0000-0000-0000-0000000f0005', 1, '{"type": "Reborn"}');
SELECT position - :gstart AS pos, agent_id, sequence, kind, event FROM agent_journal.read_feed('alice_gaps');
-- a consumer already past the removed entries gets no gap
SELECT agent_journal.ack_feed('alice_gaps', :gstart + 9);
SELECT agent_journal.compact('00000000-0000-0000-0000-0000000f0004');
SELECT position - :gstart AS pos, sequence, kind FROM agent_journal.read_feed('alice_gaps');
-- a gap row's position acknowledges what it stands for
SELECT agent_journal.subscribe('alice_gaps2', true);
SELECT max(position) AS last_pos FROM agent_journal.read_feed('alice_gaps2', 100000) \gset
SELECT agent_journal.ack_feed('alice_gaps2', :last_pos);
SELECT count(*) AS after_ack FROM agent_journal.read_feed('alice_gaps2');
RESET ROLE;

-- fork_agent: the copied entries are new entries of the fork
SET ROLE regress_aj_feed_alice;
SELECT agent_journal.fork_agent('00000000-0000-0000-0000-0000000f0001', 2,
  '00000000-0000-0000-0000-0000000f0006');
SELECT agent_id, sequence, kind FROM agent_journal.read_feed('alice_feed')
WHERE agent_id = '00000000-0000-0000-0000-0000000f0006';
RESET ROLE;

-- REPEATABLE READ: reads see one snapshot; an ack in the same
-- transaction stores the position with the consumer's own writes
CREATE TABLE public.feed_sink (position bigint PRIMARY KEY, kind text);
GRANT INSERT, SELECT ON public.feed_sink TO regress_aj_feed_alice;
SET ROLE regress_aj_feed_alice;
SELECT agent_journal.append('00000000-0000-0000-0000-0000000f0001', 4, '{"type": "Sunk"}');
SELECT count(*) > 0 AS ticked FROM agent_journal.read_feed('alice_feed');
BEGIN ISOLATION LEVEL REPEATABLE READ;
WITH r AS (SELECT * FROM agent_journal.read_feed('alice_feed')),
     s AS (INSERT INTO public.feed_sink SELECT position, kind FROM r RETURNING position)
SELECT agent_journal.ack_feed('alice_feed', max(position)) FROM s;
COMMIT;
SELECT kind FROM public.feed_sink ORDER BY position;
SELECT count(*) AS nothing_twice FROM agent_journal.read_feed('alice_feed');
RESET ROLE;
DROP TABLE public.feed_sink;

-- unsubscribe: the owner (or an admin) drops it
SET ROLE regress_aj_feed_alice;
SELECT agent_journal.unsubscribe('alice_gaps'), agent_journal.unsubscribe('alice_gaps');
RESET ROLE;
SET ROLE regress_aj_feed_admin;
SELECT agent_journal.unsubscribe('bob_feed');
RESET ROLE;

-- read (which ticks) and acknowledge what it returned in one statement
SELECT agent_journal.subscribe('one_statement') > 0 AS subscribed;
SELECT agent_journal.append('00000000-0000-0000-0000-0000000f0002', 9, '{"type": "B9"}');
SELECT agent_journal.ack_feed('one_statement', max(position)) FROM agent_journal.read_feed('one_statement');
SELECT count(*) AS acked_in_one FROM agent_journal.read_feed('one_statement');
SELECT agent_journal.unsubscribe('one_statement');

-- clean up
SELECT agent_journal.unsubscribe(c) FROM unnest(ARRAY['alice_feed', 'alice_gaps2', 'bob_now']) c;
SELECT agent_journal.forget_agent(('00000000-0000-0000-0000-0000000f000' || i)::uuid) >= 0 AS forgotten
FROM generate_series(1, 6) i;
SELECT count(*) AS forgotten_hidden FROM (
  SELECT agent_journal.forget_agent(('00000000-0000-0000-0000-0000001' || lpad(i::text, 5, '0'))::uuid)
  FROM generate_series(1, 1100) i) x;
SELECT agent_journal.revoke_access(r, l) FROM (VALUES ('regress_aj_feed_alice', 'writer'),
  ('regress_aj_feed_bob', 'reader'), ('regress_aj_feed_scraper', 'scraper'),
  ('regress_aj_feed_admin', 'admin')) v(r, l);
DROP ROLE regress_aj_feed_alice, regress_aj_feed_bob, regress_aj_feed_scraper,
  regress_aj_feed_admin, regress_aj_feed_nobody;
DROP FUNCTION public.aj_feed_err(text);
