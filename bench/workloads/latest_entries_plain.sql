-- baseline: the same in plain SQL over the same table (superuser)
SELECT sequence, kind, event FROM agent_journal.entries
WHERE agent_id = :agent::uuid ORDER BY sequence DESC LIMIT 10;
