-- ours: an agent's latest saved state, then the entries after it
SELECT sum(length(event::text)) FROM agent_journal.resume(:agent::uuid);
