-- ours: the agent's 10 latest entries, newest first
SELECT sequence, kind, event FROM agent_journal.replay_backward(:agent::uuid, max_entries => 10);
