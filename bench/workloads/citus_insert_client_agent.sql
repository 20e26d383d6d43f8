-- baseline (16a): a plain INSERT of the same row into a distributed table
-- (by agent_id, through the coordinator); the sequence from a bigserial
INSERT INTO bench_dist (agent_id, iteration, kind, recorded_at, event)
VALUES (lpad(:client_id::text, 32, '0')::uuid, 1, 'tool_call', now(), :event::jsonb);
