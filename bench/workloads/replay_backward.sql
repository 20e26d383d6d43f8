-- ours: every entry of one agent, newest first, materialized on the server
SELECT sum(length(event::text)) FROM agent_journal.replay_backward(:agent::uuid);
