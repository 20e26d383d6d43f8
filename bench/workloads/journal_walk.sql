-- baseline of workload 14: today's walk of every agent, the query the render
-- ran for the journal's own families (agents, live entries, appended and
-- compacted entries) before per-backend tallies: O(agents) through the view
SELECT count(*), COALESCE(sum(live_entries), 0)::int8, COALESCE(sum(latest_sequence), 0)::int8,
       COALESCE(sum(compacted_through), 0)::int8
FROM agent_journal.agents;
