-- agent_journal 0.9.0 -> 0.10.0: appends note themselves for the change
-- feed in an unlogged table (no WAL for the note, none for the tick that
-- moves it); after a crash the next tick rebuilds what the table lost
-- from the journal itself.
-- Upgrade script (not a test): lives in extension/, installed by `make install`.
\echo Use "ALTER EXTENSION agent_journal UPDATE TO '0.10.0'" to load this file. \quit

-- Every append (append, append_batch, fork_agent) writes one row here in
-- its own transaction: the agent and the sequences it wrote. A tick moves
-- the committed rows into feed and gives them positions, as it does with
-- feed_pending's (which keeps forget_agent's 'forgotten' notes, and notes
-- written before this version). No index: a tick takes them all.
--
-- UNLOGGED: neither the rows nor the tick's deletes are written to the
-- WAL. A crash (or a standby's promotion, or a restored base backup)
-- empties the table; the row with first_sequence 0 (the marker, which no
-- append writes: sequences start at 1) goes with it, and the next tick,
-- finding it missing, notes for every agent the sequences past the last
-- one its feed rows cover, before it moves anything (holding a SHARE lock
-- on entries meanwhile, so that no append or removal commits in between),
-- then puts the marker back. pg_dump dumps the rows and the marker with
-- the feed they belong to.
CREATE UNLOGGED TABLE agent_journal.feed_appends (
    agent_id       uuid        NOT NULL,
    first_sequence bigint      NOT NULL,
    last_sequence  bigint      NOT NULL,
    written_at     timestamptz NOT NULL DEFAULT clock_timestamp()
);
COMMENT ON TABLE agent_journal.feed_appends IS
  'appends not yet in the feed (unlogged; the row with first_sequence 0 marks it as not emptied by a crash)';
ALTER TABLE agent_journal.feed_appends ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON agent_journal.feed_appends FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('agent_journal.feed_appends', '');
-- feed_pending's rows stay where they are (the tick takes both); the
-- marker says that nothing was lost so far.
INSERT INTO agent_journal.feed_appends (agent_id, first_sequence, last_sequence)
VALUES ('00000000-0000-0000-0000-000000000000', 0, 0);

-- The count of appended entries (journal_appended), when the library is
-- preloaded and its background worker ticks the feed in this database:
-- each backend adds to its own row here, as to tallies (one row per name
-- and backend slot), without writing the WAL. A render sums both tables.
-- A crash empties this table (and feed_appends' marker): the tick that
-- rebuilds the feed's notes also adds to tallies what the count lost, the
-- agents' latest sequences plus what forgotten agents counted (the
-- family's definition) minus what both tables still hold; until then a
-- render counts the same way from the journal. Elsewhere (not preloaded,
-- another database, Citus) every count goes to tallies as before.
CREATE UNLOGGED TABLE agent_journal.tally_deltas (
    name  text    NOT NULL,
    slot  integer NOT NULL,
    value bigint  NOT NULL DEFAULT 0,
    PRIMARY KEY (name, slot)
);
COMMENT ON TABLE agent_journal.tally_deltas IS
  'per-backend-slot parts of journal_appended written without WAL (unlogged; a count is the sum of its rows here and in tallies)';
ALTER TABLE agent_journal.tally_deltas ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON agent_journal.tally_deltas FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('agent_journal.tally_deltas', '');
