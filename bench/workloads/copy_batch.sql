-- baseline: COPY of the same 1000 rows from a server-side file
-- (COPY takes no parameters: bench.py writes the path in for @ROWSFILE@)
COPY bench.plain (agent_id, iteration, kind, event) FROM '@ROWSFILE@';
