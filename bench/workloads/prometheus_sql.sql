-- baseline: the same text in pure SQL: HELP/TYPE per family, one line per
-- series, labels sorted by name, label values and HELP escaped with replace()
SELECT octet_length(string_agg(block, '' ORDER BY fname))
FROM (
  SELECT f.name AS fname,
         '# HELP ' || f.name || ' '
           || replace(replace(coalesce(f.help, f.name), E'\\', E'\\\\'), E'\n', E'\\n')
           || E'\n# TYPE ' || f.name || ' ' || f.type || E'\n'
           || string_agg(s.name || coalesce('{' || l.txt || '}', '') || ' ' || s.value::text || E'\n',
                         '' ORDER BY l.txt) AS block
  FROM agent_journal.metric_families f
  JOIN agent_journal.metric_series s ON s.name = f.name
  CROSS JOIN LATERAL (
    SELECT string_agg(key || '="'
                      || replace(replace(replace(value, E'\\', E'\\\\'), '"', E'\\"'), E'\n', E'\\n')
                      || '"', ',' ORDER BY key) AS txt
    FROM jsonb_each_text(s.labels)) l
  GROUP BY f.name, f.help, f.type
) b;
