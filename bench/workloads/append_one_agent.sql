-- ours: one event, every client appends to the same agent
SELECT agent_journal.append(:agent::uuid, 1, :event::jsonb);
