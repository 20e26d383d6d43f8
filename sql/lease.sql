-- Leases with fencing tokens (0.5.0): claim_agent, renew_lease,
-- release_agent; append, append_batch and compact take `lease`. Tokens are
-- never printed (they come from one sequence); comparisons are.
\set VERBOSITY terse
CREATE FUNCTION public.aj_lease_err(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN EXECUTE q; RETURN 'ok';
EXCEPTION WHEN OTHERS THEN RETURN SQLSTATE; END $$;
-- SQLSTATE and the message with its timestamp replaced by <time>
CREATE FUNCTION public.aj_lease_msg(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN EXECUTE q; RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
  RETURN SQLSTATE || ': ' || regexp_replace(SQLERRM, '\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)?[+-]\d\d', '<time>', 'g');
END $$;
GRANT EXECUTE ON FUNCTION public.aj_lease_err(text), public.aj_lease_msg(text) TO PUBLIC;
\set a '''00000000-0000-0000-0000-00000000c001'''
\set b '''00000000-0000-0000-0000-00000000c002'''
\set c '''00000000-0000-0000-0000-00000000c003'''
-- a distinctive token range, to check messages never show the live token
SELECT setval('agent_journal.lease_tokens', 987654320) > 0 AS moved;

-- 1. arguments
SELECT aj_lease_err($$SELECT agent_journal.claim_agent(NULL, 'w')$$) AS null_agent,
       aj_lease_err($$SELECT agent_journal.claim_agent('00000000-0000-0000-0000-00000000c001', NULL)$$) AS null_worker,
       aj_lease_err($$SELECT agent_journal.claim_agent('00000000-0000-0000-0000-00000000c001', 'w', NULL)$$) AS null_ttl,
       aj_lease_err($$SELECT agent_journal.renew_lease('00000000-0000-0000-0000-00000000c001', NULL)$$) AS null_renew,
       aj_lease_err($$SELECT agent_journal.release_agent('00000000-0000-0000-0000-00000000c001', NULL)$$) AS null_release;
SELECT aj_lease_msg($$SELECT agent_journal.claim_agent('00000000-0000-0000-0000-00000000c001', '')$$);
SELECT aj_lease_msg($$SELECT agent_journal.claim_agent('00000000-0000-0000-0000-00000000c001', repeat('w', 257))$$);
SELECT aj_lease_msg($$SELECT agent_journal.claim_agent('00000000-0000-0000-0000-00000000c001', 'w', '0 seconds')$$);
SELECT aj_lease_msg($$SELECT agent_journal.claim_agent('00000000-0000-0000-0000-00000000c001', 'w', '-1 seconds')$$);
SELECT aj_lease_msg($$SELECT agent_journal.claim_agent('00000000-0000-0000-0000-00000000c001', 'w', '1 day 1 second')$$);
SELECT aj_lease_msg($$SELECT agent_journal.claim_agent('00000000-0000-0000-0000-00000000c001', 'w', '1 mon')$$);
SELECT aj_lease_msg($$SELECT agent_journal.renew_lease('00000000-0000-0000-0000-00000000c001', 1, '25 hours')$$);
-- the bounds themselves are fine (claims rolled back)
BEGIN;
SELECT agent_journal.claim_agent(:a, repeat('w', 256), '1 day') > 0 AS longest_worker_one_day;
ROLLBACK;
BEGIN;
SELECT agent_journal.claim_agent(:a, 'w', '24 hours') > 0 AS twenty_four_hours;
ROLLBACK;
-- nothing was left behind by the failed or rolled-back claims
SELECT count(*) AS leases FROM agent_journal.leases;
-- a read-only transaction refuses every lease call
BEGIN READ ONLY;
SELECT aj_lease_err($$SELECT agent_journal.claim_agent('00000000-0000-0000-0000-00000000c001', 'w')$$) AS read_only;
ROLLBACK;

-- 2. claim: a token; the holder again: the same token, extended; another
-- worker: NULL while it is live
SELECT agent_journal.claim_agent(:a, 'worker-a', '1 hour') AS tok_a \gset
SELECT :tok_a > 987654320 AS from_the_sequence;
SELECT agent_journal.claim_agent(:a, 'worker-a', '2 hours') = :tok_a AS same_token_again;
SELECT agent_journal.claim_agent(:a, 'worker-b') IS NULL AS other_worker_gets_null;
SELECT agent_id, lease = :tok_a AS is_tok_a, worker,
       expires_at > now() + interval '90 minutes' AS extended, claimed_at <= expires_at AS ordered
FROM agent_journal.leases;

-- 3. fenced writes: with the live token they work; without one, or with
-- another, 55006 naming the holder and the expiry, never the token, and
-- nothing is written
SELECT agent_journal.append(:a, 1, '{"type": "Leased"}', lease => :tok_a);
SELECT agent_journal.append_batch(:a, 2, ARRAY['{"type": "B1"}', '{"type": "B2"}']::jsonb[], lease => :tok_a);
SELECT aj_lease_msg($$SELECT agent_journal.append('00000000-0000-0000-0000-00000000c001', 3, '{"type": "NoLease"}')$$);
SELECT aj_lease_msg(format($$SELECT agent_journal.append('00000000-0000-0000-0000-00000000c001', 3, '{}', lease => %s)$$, :tok_a + 1000));
SELECT aj_lease_err(format($$SELECT agent_journal.append_batch('00000000-0000-0000-0000-00000000c001', 3, ARRAY['{}']::jsonb[], lease => %s)$$, :tok_a - 1)) AS batch_other_token,
       aj_lease_err($$SELECT agent_journal.append_batch('00000000-0000-0000-0000-00000000c001', 3, ARRAY['{}']::jsonb[])$$) AS batch_no_token,
       aj_lease_err($$SELECT agent_journal.compact('00000000-0000-0000-0000-00000000c001', 1)$$) AS compact_no_token,
       aj_lease_err(format($$SELECT agent_journal.compact('00000000-0000-0000-0000-00000000c001', 1, %s)$$, :tok_a + 1)) AS compact_other_token;
-- the live token appears in no refusal
DO $$
DECLARE tok bigint := (SELECT lease FROM agent_journal.agent_state WHERE agent_id = '00000000-0000-0000-0000-00000000c001');
        msg text; det text;
BEGIN
  BEGIN
    PERFORM agent_journal.append('00000000-0000-0000-0000-00000000c001', 3, '{}', lease => tok + 7);
  EXCEPTION WHEN object_in_use THEN GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL;
  END;
  IF position(tok::text IN msg || det) > 0 THEN RAISE EXCEPTION 'live token in a refusal: % / %', msg, det; END IF;
  RAISE NOTICE 'refusal names the holder: %, the expiry: %', msg LIKE '%worker-a%', msg LIKE '%until%';
END $$;
SELECT sequence, kind FROM agent_journal.replay(:a);
SELECT agent_journal.compact(:a, 1, :tok_a) AS compacted;

-- 4. check order: tenant, lease, idempotency key, expected_sequence
SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_aj_lease_alice, regress_aj_lease_bob, regress_aj_lease_reader, regress_aj_lease_scraper;
RESET client_min_messages;
CREATE ROLE regress_aj_lease_alice;
CREATE ROLE regress_aj_lease_bob;
CREATE ROLE regress_aj_lease_reader;
CREATE ROLE regress_aj_lease_scraper;
SELECT agent_journal.grant_access('regress_aj_lease_alice', 'writer');
SELECT agent_journal.grant_access('regress_aj_lease_bob', 'writer');
SELECT agent_journal.grant_access('regress_aj_lease_reader', 'reader');
SELECT agent_journal.grant_access('regress_aj_lease_scraper', 'scraper');
SELECT agent_journal.bind_agent(:b, 'regress_aj_lease_alice');
SET ROLE regress_aj_lease_alice;
SELECT agent_journal.claim_agent(:b, 'alice-1', '1 hour') AS tok_b \gset
SELECT agent_journal.append(:b, 1, '{"type": "Keyed"}', idempotency_key => 'k1', lease => :tok_b);
RESET ROLE;
SET ROLE regress_aj_lease_bob;
-- tenant first: bob may not use alice's agent, with or without its token
SELECT aj_lease_err(format($$SELECT agent_journal.append('00000000-0000-0000-0000-00000000c002', 1, '{}', lease => %s)$$, :tok_b)) AS bob_with_token,
       aj_lease_err($$SELECT agent_journal.claim_agent('00000000-0000-0000-0000-00000000c002', 'bob-1')$$) AS bob_claims,
       aj_lease_err(format($$SELECT agent_journal.renew_lease('00000000-0000-0000-0000-00000000c002', %s)$$, :tok_b)) AS bob_renews,
       aj_lease_err(format($$SELECT agent_journal.release_agent('00000000-0000-0000-0000-00000000c002', %s)$$, :tok_b)) AS bob_releases;
RESET ROLE;
SET ROLE regress_aj_lease_alice;
-- lease before the key: a fenced retry of a committed keyed append is refused
SELECT aj_lease_err($$SELECT agent_journal.append('00000000-0000-0000-0000-00000000c002', 1, '{"type": "Keyed"}', idempotency_key => 'k1')$$) AS fenced_retry;
-- lease before expected_sequence
SELECT aj_lease_err($$SELECT agent_journal.append('00000000-0000-0000-0000-00000000c002', 1, '{}', expected_sequence => 99)$$) AS fenced_before_expected;
-- with the token: the key answers, then expected_sequence is checked
SELECT agent_journal.append(:b, 1, '{"type": "Keyed"}', idempotency_key => 'k1', lease => :tok_b) AS key_answers;
SELECT aj_lease_err(format($$SELECT agent_journal.append('00000000-0000-0000-0000-00000000c002', 1, '{}', expected_sequence => 99, lease => %s)$$, :tok_b)) AS expected_checked;
RESET ROLE;

-- 5. privileges: readers and scrapers cannot claim; readers see leases
SET ROLE regress_aj_lease_reader;
SELECT aj_lease_err($$SELECT agent_journal.claim_agent('00000000-0000-0000-0000-00000000c003', 'r')$$) AS reader_claims,
       aj_lease_err($$SELECT agent_journal.release_agent('00000000-0000-0000-0000-00000000c001', 1)$$) AS reader_releases;
SELECT agent_id, worker FROM agent_journal.leases ORDER BY 1;  -- alice's bound agent is not visible
RESET ROLE;
SET ROLE regress_aj_lease_scraper;
SELECT aj_lease_err($$SELECT * FROM agent_journal.leases$$) AS scraper_leases,
       aj_lease_err($$SELECT agent_journal.claim_agent('00000000-0000-0000-0000-00000000c003', 's')$$) AS scraper_claims;
RESET ROLE;
SET ROLE regress_aj_lease_alice;
SELECT agent_id, worker FROM agent_journal.leases ORDER BY 1;  -- a writer without reader: no view
RESET ROLE;

-- 6. renew and release
SELECT agent_journal.renew_lease(:a, :tok_a, '3 hours') > now() + interval '170 minutes' AS renewed;
SELECT aj_lease_msg(format($$SELECT agent_journal.renew_lease('00000000-0000-0000-0000-00000000c001', %s)$$, :tok_a + 1));
SELECT agent_journal.release_agent(:a, :tok_a + 1) AS other_token_releases,
       agent_journal.release_agent(:a, :tok_a) AS released,
       agent_journal.release_agent(:a, :tok_a) AS released_again;
SELECT aj_lease_msg(format($$SELECT agent_journal.renew_lease('00000000-0000-0000-0000-00000000c001', %s)$$, :tok_a));
-- released: writes without a token work again; the old token is refused
SELECT agent_journal.append(:a, 3, '{"type": "Unleased"}') AS unleased;
SELECT aj_lease_msg(format($$SELECT agent_journal.append('00000000-0000-0000-0000-00000000c001', 3, '{}', lease => %s)$$, :tok_a));

-- 7. expiry and takeover: a lease that expired is not live; another
-- worker's claim is a takeover with a new, larger token
SELECT COALESCE((SELECT value FROM agent_journal.metric_samples
                 WHERE name = 'agent_journal_lease_takeovers_total'), -1) AS takeovers_before \gset
SELECT agent_journal.claim_agent(:a, 'worker-a', '10 milliseconds') AS tok_a2 \gset
SELECT :tok_a2 > :tok_a AS new_attempt_new_token;
SELECT pg_sleep(0.05);
SELECT count(*) AS live_after_expiry FROM agent_journal.leases WHERE agent_id = :a;
SELECT aj_lease_err(format($$SELECT agent_journal.renew_lease('00000000-0000-0000-0000-00000000c001', %s)$$, :tok_a2)) AS renew_expired,
       agent_journal.release_agent(:a, :tok_a2) AS release_expired;
SELECT agent_journal.append(:a, 4, '{"type": "AfterExpiry"}') AS no_token_after_expiry;
SELECT aj_lease_err(format($$SELECT agent_journal.append('00000000-0000-0000-0000-00000000c001', 4, '{}', lease => %s)$$, :tok_a2)) AS expired_token;
SELECT agent_journal.claim_agent(:a, 'worker-b', '1 hour') AS tok_b2 \gset
SELECT :tok_b2 > :tok_a2 AS takeover_token_larger;
SELECT value - :takeovers_before AS takeovers_added FROM agent_journal.metric_samples
WHERE name = 'agent_journal_lease_takeovers_total';
-- the same worker re-claiming its own expired lease, and a claim after a
-- release, are no takeovers
SELECT agent_journal.release_agent(:a, :tok_b2) AS released_b;
SELECT agent_journal.claim_agent(:a, 'worker-c', '10 milliseconds') > :tok_b2 AS claim_after_release;
SELECT pg_sleep(0.05);
SELECT agent_journal.claim_agent(:a, 'worker-c', '1 hour') AS tok_c \gset
SELECT value - :takeovers_before AS takeovers_added FROM agent_journal.metric_samples
WHERE name = 'agent_journal_lease_takeovers_total';
SELECT value AS leases_active FROM agent_journal.metric_samples WHERE name = 'agent_journal_leases_active';

-- 8. the lease graph: every claim that started a lease, in claim order;
-- a holder re-claiming adds none; bounded by timeline_limit
SELECT agent_journal.claim_agent(:a, 'worker-c', '1 hour') = :tok_c AS holder_again;
SELECT agent_journal.observability(:a) -> 'lease_graph' AS lease_graph;
SELECT agent_journal.observability(:a, 2) -> 'lease_graph' AS last_two;
SELECT agent_journal.observability(:c) -> 'lease_graph' AS never_claimed;

-- 9. forget_agent removes the lease and its graph; a token from before
-- never matches again
SELECT agent_journal.forget_agent(:a) > 0 AS forgotten;
SELECT count(*) AS leases_of_a FROM agent_journal.leases WHERE agent_id = :a;
SELECT agent_journal.observability(:a) -> 'lease_graph' AS graph_after_forget;
SELECT aj_lease_err(format($$SELECT agent_journal.append('00000000-0000-0000-0000-00000000c001', 1, '{}', lease => %s)$$, :tok_c)) AS zombie_after_forget;
SELECT agent_journal.latest_sequence(:a) AS nothing_written;
SELECT agent_journal.claim_agent(:a, 'worker-d', '1 hour') AS tok_d \gset
SELECT :tok_d > :tok_c AS never_reused;
SELECT aj_lease_err(format($$SELECT agent_journal.append('00000000-0000-0000-0000-00000000c001', 1, '{}', lease => %s)$$, :tok_c)) AS old_token_vs_new_lease;
SELECT agent_journal.observability(:a) -> 'lease_graph' AS graph_restarts;
SELECT agent_journal.append(:a, 1, '{"type": "Fresh"}', lease => :tok_d) AS fresh_start;

-- 10. agents never claimed work as before
SELECT agent_journal.append(:c, 0, '{"type": "Plain"}') AS plain, agent_journal.compact(:c) AS plain_compact;

-- clean up
SELECT agent_journal.forget_agent(x) >= 0 AS cleaned FROM (VALUES (:a::uuid), (:b::uuid), (:c::uuid)) v(x);
SELECT agent_journal.revoke_access(r, l) FROM (VALUES ('regress_aj_lease_alice', 'writer'), ('regress_aj_lease_bob', 'writer'),
  ('regress_aj_lease_reader', 'reader'), ('regress_aj_lease_scraper', 'scraper')) v(r, l);
DROP ROLE regress_aj_lease_alice, regress_aj_lease_bob, regress_aj_lease_reader, regress_aj_lease_scraper;
DROP FUNCTION public.aj_lease_err(text), public.aj_lease_msg(text);
-- the takeovers counter this test moved (other tests read the exposition)
DELETE FROM agent_journal.counter_slots WHERE name = 'agent_journal_lease_takeovers_total';
DELETE FROM agent_journal.metric_families WHERE name = 'agent_journal_lease_takeovers_total';
