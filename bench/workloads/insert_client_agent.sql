-- baseline: plain INSERT of the same row, sequence from a global bigserial
INSERT INTO bench.plain (agent_id, iteration, kind, recorded_at, event)
VALUES (lpad(:client_id::text, 32, '0')::uuid, 1, 'tool_call', now(), :event::jsonb)
RETURNING sequence;
