-- ours: a worker's claim (the same worker again: the same token, extended)
-- and a renewal with the token it returned, each its own transaction
-- (autocommit, as a worker calls them), each client its own agent
SELECT agent_journal.claim_agent(lpad(:client_id::text, 32, '0')::uuid, 'bench-' || :client_id,
                                 interval '1 day') AS token \gset
SELECT agent_journal.renew_lease(lpad(:client_id::text, 32, '0')::uuid, :token, interval '1 day');
