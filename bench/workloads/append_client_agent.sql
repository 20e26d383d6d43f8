-- ours: one event, each client its own agent
SELECT agent_journal.append(lpad(:client_id::text, 32, '0')::uuid, 1, :event::jsonb);
