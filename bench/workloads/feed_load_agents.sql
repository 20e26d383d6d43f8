-- workload 15b's load: a new agent per transaction, its 1,000 entries in
-- one append_batch (the jsonb[] of workload 3, read server-side)
SELECT agent_journal.append_batch(gen_random_uuid(), 1, pg_read_file(:batchfile)::jsonb[]);
