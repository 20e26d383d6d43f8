-- ours: the agent's latest checkpoint, newest first
SELECT sequence, kind, event
FROM agent_journal.replay_backward(:agent::uuid, max_entries => 1, kinds => ARRAY['checkpoint']);
