-- baseline: every client increments the same row
UPDATE bench.counter SET v = v + 1 WHERE id = 1 RETURNING v;
