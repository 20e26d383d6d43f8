-- ours (7o): the OpenMetrics exposition, with _created and exemplars; only its size is sent
SELECT sum(octet_length(exposition)) FROM agent_journal.openmetrics;
