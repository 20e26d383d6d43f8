-- ours: every entry of one agent, materialized on the server
SELECT sum(length(event::text)) FROM agent_journal.replay(:agent::uuid);
