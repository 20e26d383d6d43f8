-- baseline (16b): the same rows from a distributed table, in sequence order
SELECT sum(length(event::text))
FROM (SELECT event FROM bench_dist_replay WHERE agent_id = :agent::uuid ORDER BY sequence) s;
