-- ours: one event, each client its own agent, written under the client's
-- lease: its first transaction claims the agent for a day (bench.py passes
-- -D token=0), every call then carries the token
\if :token = 0
SELECT agent_journal.claim_agent(lpad(:client_id::text, 32, '0')::uuid, 'bench-' || :client_id,
                                 interval '1 day') AS token \gset
\endif
SELECT agent_journal.append(lpad(:client_id::text, 32, '0')::uuid, 1, :event::jsonb, lease => :token);
