-- baseline: the same rows in pages of 1,000 by keyset pagination over the
-- entries table (primary key order), all columns to the client; \aset keeps
-- the last row's key for the next page (-D agent_id=<zero uuid> sequence=0
-- to start).
SELECT agent_id, sequence, iteration, kind, recorded_at, event
FROM agent_journal.entries
WHERE (agent_id, sequence) > (:agent_id::uuid, :sequence::bigint)
ORDER BY agent_id, sequence
LIMIT 1000 \aset
