-- ours: 1000 events in one call; the jsonb[] literal is read and parsed
-- server-side each time, as COPY reads and parses its file
SELECT agent_journal.append_batch(lpad(:client_id::text, 32, '0')::uuid, 1,
                                  pg_read_file(:batchfile)::jsonb[]);
