-- workload 14's load: :n new agents, one entry each, made by append in one
-- transaction (append locks each agent until commit: :n stays well under the
-- lock table, max_locks_per_transaction x connections)
SELECT count(agent_journal.append(gen_random_uuid(), 1, '{"type": "step"}')) FROM generate_series(1, :n);
