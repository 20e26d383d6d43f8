-- ours: the entry written under a random one of the agent's idempotency keys
\set k random(1, :n)
SELECT sequence, kind, event FROM agent_journal.entry_by_key(:agent::uuid, 'key-' || :k);
