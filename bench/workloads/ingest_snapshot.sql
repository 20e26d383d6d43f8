-- ours: one runtime snapshot per call, each client its own service; the
-- timestamp is made fresh server-side (same cost on both sides)
SELECT agent_journal.ingest_snapshot(
    jsonb_set(:snapshot::jsonb, '{timestamp}', to_jsonb(extract(epoch FROM clock_timestamp()))),
    'svc-' || :client_id);
