-- baseline: plain INSERT of the same row for the same agent
INSERT INTO bench.plain (agent_id, iteration, kind, recorded_at, event)
VALUES (:agent::uuid, 1, 'tool_call', now(), :event::jsonb)
RETURNING sequence;
