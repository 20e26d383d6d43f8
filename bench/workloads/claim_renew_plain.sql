-- baseline: the same two steps in plain SQL on a one-row-per-agent table:
-- an upsert that keeps the token for the same worker (a new one from a
-- sequence for a free or expired row), then an UPDATE of the expiry that
-- checks the token, each in its own transaction (autocommit), as a worker calls them
INSERT INTO bench.leases AS l (agent_id, worker, lease, expires_at)
VALUES (lpad(:client_id::text, 32, '0')::uuid, 'bench-' || :client_id,
        nextval('bench.lease_tokens'), clock_timestamp() + interval '1 day')
ON CONFLICT (agent_id) DO UPDATE
   SET lease = CASE WHEN l.worker = EXCLUDED.worker AND l.expires_at > clock_timestamp()
                    THEN l.lease ELSE EXCLUDED.lease END,
       worker = EXCLUDED.worker, expires_at = EXCLUDED.expires_at
 WHERE l.worker = EXCLUDED.worker OR l.expires_at <= clock_timestamp()
RETURNING lease AS token \gset
UPDATE bench.leases SET expires_at = clock_timestamp() + interval '1 day'
 WHERE agent_id = lpad(:client_id::text, 32, '0')::uuid AND lease = :token
   AND expires_at > clock_timestamp()
RETURNING expires_at;
