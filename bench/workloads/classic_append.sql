-- peer: classic PL/pgSQL event store, each client its own stream
SELECT bench.es_append(lpad(:client_id::text, 32, '0')::uuid::text, :event::jsonb);
