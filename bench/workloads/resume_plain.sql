-- baseline: the entries after the state from a plain table, in sequence
-- order (the state's through_sequence given, not looked up)
SELECT sum(length(event::text))
FROM (SELECT event FROM bench.replay_plain
      WHERE agent_id = :agent::uuid AND sequence > :after ORDER BY sequence) s;
