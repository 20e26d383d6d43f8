-- ours: every client increments the same series
SELECT agent_journal.counter_add('bench_requests_total', 1, '{"route": "/api"}'::jsonb,
                                 'requests served (bench)');
