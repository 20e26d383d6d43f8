-- baseline: the same lookup in plain SQL over the same tables (superuser)
\set k random(1, :n)
SELECT e.sequence, e.kind, e.event
FROM agent_journal.idempotency_keys k
JOIN agent_journal.entries e
  ON e.agent_id = k.agent_id AND e.sequence BETWEEN k.first_sequence AND k.last_sequence
WHERE k.agent_id = :agent::uuid AND k.idempotency_key = 'key-' || :k
ORDER BY e.sequence;
