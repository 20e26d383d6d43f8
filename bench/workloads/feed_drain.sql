-- ours: one step of a consumer draining the feed, as
-- examples/feed_consumer.cpp reads: in one transaction (which does not
-- tick), the next 1,000 entries after its acknowledged position, every
-- column to the client, then the ack of the last one read. \aset keeps the
-- last row's values; pgbench variables persist from one step to the next
-- (-D position=0 to start).
BEGIN;
SELECT position, agent_id, sequence, iteration, kind, recorded_at, event
FROM agent_journal.read_feed(:consumer, 1000) \aset
SELECT agent_journal.ack_feed(:consumer, :position);
COMMIT;
