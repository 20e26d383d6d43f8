-- baseline: INSERT of the same jsonb into a plain table
INSERT INTO bench.snapshots (service, snapshot)
VALUES ('svc-' || :client_id,
        jsonb_set(:snapshot::jsonb, '{timestamp}', to_jsonb(extract(epoch FROM clock_timestamp()))))
RETURNING id;
