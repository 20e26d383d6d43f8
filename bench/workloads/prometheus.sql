-- ours: the whole exposition, rendered on the server (only its size in bytes is sent;
-- octet_length on both sides, so neither pays for counting UTF-8 characters)
SELECT sum(octet_length(exposition)) FROM agent_journal.prometheus;
