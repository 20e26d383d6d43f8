-- baseline: the same rows from a plain table, newest first
SELECT sum(length(event::text))
FROM (SELECT event FROM bench.replay_plain WHERE agent_id = :agent::uuid ORDER BY sequence DESC) s;
