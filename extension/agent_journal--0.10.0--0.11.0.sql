-- agent_journal 0.10.0 -> 0.11.0: where the library is preloaded and its
-- worker ticks the feed, an append's note for the feed carries the count
-- of its entries (journal_appended): the appending transaction writes no
-- tally row at all, the tick that moves the note counts it.
-- Upgrade script (not a test): lives in extension/, installed by `make install`.
\echo Use "ALTER EXTENSION agent_journal UPDATE TO '0.11.0'" to load this file. \quit

-- counted = false: the writer did not count the note's entries in
-- journal_appended. The tick that moves the note into the feed adds them
-- to tallies in its own transaction; forget_agent, if it removes the note
-- first, does the same; a render adds the notes still here (at most a
-- tick's worth of appends while the worker ticks). Only appends where the
-- library is preloaded and its worker ticks the feed in this database
-- write such notes; every other note (true, the rows already here too)
-- was counted by its writer. After a crash empties the table, the
-- rebuilding tick counts what was lost from the journal itself, as for
-- tally_deltas (0.10.0).
ALTER TABLE agent_journal.feed_appends
  ADD COLUMN counted boolean NOT NULL DEFAULT true;
COMMENT ON COLUMN agent_journal.feed_appends.counted IS
  'false: the note carries its entries'' journal_appended count until a tick (or forget_agent) removes it';
