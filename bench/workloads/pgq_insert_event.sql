-- peer: PgQ, one event into one queue
SELECT pgq.insert_event('bench_q', 'tool_call', :event);
