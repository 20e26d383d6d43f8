// What journal.cpp shares with the other per-agent areas (lease.cpp): the
// agent's latest state as read under its lock, and the checks every writer
// runs in order (tenant, lease, idempotency key, expected_sequence).
#pragma once

#include "pg/pg.hpp"

namespace ajpg {

struct Latest {
  int64 sequence = 0;           // highest sequence ever assigned (0: none)
  int64 compacted = 0;          // compaction point (entries <= it are gone)
  int32 compacted_iteration = 0;
  bool has_entry = false;       // a live entry exists
  bool known = false;           // the agent has a state row
  bool bound = false;           // bound to a role by bind_agent
  Oid owner = InvalidOid;       // that role; InvalidOid if it does not exist (admins only)
  TimestampTz last_recorded_at = 0;
  // The lease (schema 0.5.0; lease_cols false before): token 0 = none
  // (released or never claimed). A lease is live until lease_expires.
  bool lease_cols = false;
  int64 lease = 0;
  char *lease_worker = nullptr;  // palloc'd; only when lease != 0
  TimestampTz lease_claimed = 0, lease_expires = 0;
  int32 lease_attempts = 0;
  bool lease_live(TimestampTz now) const { return lease != 0 && lease_expires > now; }
  // What a writer's decision depends on. The lease is left out: it is
  // always read fresh under the lock, so a renew from another connection
  // does not fail an append's REPEATABLE READ transaction (compact, which
  // updates the state row the renew updated, gets PostgreSQL's 40001).
  bool same_as(const Latest &o) const {
    return sequence == o.sequence && has_entry == o.has_entry && known == o.known &&
           bound == o.bound && owner == o.owner;
  }
};

enum class View {
  Fresh,        // a new snapshot: everything committed before we took the lock
  Transaction,  // the transaction's snapshot, including its own earlier writes
  Statement,    // the calling statement's snapshot (read-only functions)
};

// The journal's relations, looked up once per transaction (DROP/CREATE
// EXTENSION can change their OIDs between transactions, never inside one
// that uses them). lease_graph is InvalidOid before schema 0.5.0.
struct Rels {
  Oid entries, entries_pkey, state, state_pkey;
  Oid lease_graph, saved_states, retention, tallies, tallies_pkey, saved_states_pkey;  // 0.5.0
  Oid tally_deltas, tally_deltas_pkey;                                                    // 0.10.0
};
// The next rels() looks the relations up again (the agent's shards were
// found again after a wait for them: lock_agent_shard).
void rels_forget();
const Rels &rels();
// The agent whose shards rels() names on a distributed journal (Citus):
// set by lock_agent and by the readers before their first read.
void journal_agent(const pg_uuid_t *agent);
// journal_agent for a SQL function whose first argument is the agent (if
// it is not NULL): called first, so the schema checks before the agent's
// lock already look at the agent's shards.
inline void journal_agent_arg(FunctionCallInfo fcinfo) {
  if (PG_NARGS() > 0 && !PG_ARGISNULL(0)) journal_agent(DatumGetUUIDP(PG_GETARG_DATUM(0)));
}

// Reads the agent's latest sequence, compaction point, owner and lease.
Latest read_latest(Datum agent, View view);
// Under the agent lock: the latest state as committed, after the tenant
// check (42501).
Latest read_latest_locked(Datum agent, const OwnerSwitch &who);
// Under REPEATABLE READ / SERIALIZABLE: 40001 if the transaction's view of
// the agent differs from the committed one.
void check_serializable(const Latest &l, Datum agent);

// The lease check of every fenced writer (lease.cpp), right after the
// tenant check: `token` (has_token false: the write carries none) must be
// the agent's live lease, and a write without one is refused while a lease
// is live. ERROR 55006 naming the holder and the expiry, never the token;
// counts the refusal in shared memory (fenced_writes_total).
void check_lease(const Latest &l, bool has_token, int64 token, Datum agent);
// The write's lease argument: argument `argno` when the SQL declaration
// has it (0.5.0) and it is not NULL.
bool lease_arg(FunctionCallInfo fcinfo, int argno, int64 *token);

// Inside SPI: the rows of `plan` (replay's five columns) into the set
// result, fetched through a cursor a page of 1000 at a time (a Citus
// coordinator buffers a distributed result: pages keep that bounded), at
// most max_entries.
void cursor_into(ReturnSetInfo *rsinfo, SPIPlanPtr plan, Datum *args, const char *nulls,
                 int64 max_entries);
// Under the agent lock, inside SPI as the owner (journal.cpp):
// Deletes the agent's entries <= through (> its compaction point), moves
// the compaction point, drops saved states below it; returns how many
// entries went.
int64 compact_locked(Datum agent, const Latest &l, int64 through);
// ERROR 54000 if a jsonb argument is over agent_journal.max_event_bytes.
void check_size(Size raw, const char *argname);
// 22023 / 54000 for a bad idempotency key.
void check_key(text *key);
// The caller's tenant check on an agent (42501).
void check_tenant(const Latest &l, const OwnerSwitch &who, Datum agent);
// The same for a reader, from the statement's snapshot: the common cases
// (an unbound agent, the owner's privileges, a superuser) need no SPI;
// returns the agent's latest state.
Latest check_agent_read(Datum agent);
// Entries of `agent` with from <= sequence <= to, at most max, in order,
// into the materialized SRF result (replay's columns).
void entries_into(ReturnSetInfo *rsinfo, Datum agent, int64 from, int64 to, int64 max);
// The extension's columns are found by name in a relation's current
// descriptor, never by position (an operator may add, drop or reorder
// columns). map_columns fills `out` with the attribute numbers of `cols`;
// ERROR 55000 naming the column if one is missing or has another type.
// Returns how many live (not dropped) attributes the relation has.
struct ColumnSpec {
  const char *name;
  Oid type, alt_type;  // alt_type: an older schema's type (InvalidOid: none)
  bool optional;       // absent from older schemas (its attribute number is then 0)
};
int map_columns(Relation rel, const ColumnSpec *cols, int n, AttrNumber *out);
// May a row go into `rel` (with `live_columns` live attributes, of which we
// fill `our_columns`) by simple_insert? A plain table, only our columns, no
// rules, no statement-level insert triggers or transition tables.
bool direct_insert_ok(Relation rel, int live_columns, int our_columns);
// One row by attribute number, as logical replication's apply inserts
// (constraints, indexes, row triggers; no planner, no full executor).
void simple_insert(Relation rel, const Datum *values, const bool *isnull);

// A scan of entries_pkey opened once and repositioned per range (read_feed
// reads many agents' ranges in one call). Columns are found by name, their
// types checked (55000). Values: ENTRY_AGENT ... ENTRY_EVENT.
struct EntryScan {
  Relation heap, index;
  struct IndexScanDescData *scan;
  TupleTableSlot *slot;
  AttrNumber col[6];
};
enum { ENTRY_AGENT, ENTRY_SEQUENCE, ENTRY_ITERATION, ENTRY_KIND, ENTRY_RECORDED_AT, ENTRY_EVENT };
EntryScan *entry_scan_begin(Snapshot snap);
void entry_scan_range(EntryScan *s, Datum agent, int64 from, int64 to);
bool entry_scan_next(EntryScan *s);  // the next entry of the range, in sequence order
Datum entry_value(const EntryScan *s, int column, bool *isnull);
void entry_scan_end(EntryScan *s);

// tally.cpp: the extension's own counts, per backend slot (table tallies).
// Adds delta to this backend's row of `name` when the transaction commits
// (summed in memory until then: one row update per name per transaction;
// taken back with a subtransaction that rolls back). `name` must be one of
// the TALLY_* constants. Does nothing on schemas before 0.5.0.
void tally_add(const char *name, int64 delta);
// tally_add into tallies even where journal_appended goes to the unlogged
// tally_deltas (the tick making up for what a crash lost).
void tally_add_logged(const char *name, int64 delta);
// Does the worker tick the feed in this database (the library preloaded,
// feed_tick_interval above 0, export_database this one, no Citus)? There
// journal_appended goes to tally_deltas (0.10.0) or, for append and
// append_batch, rides on their feed notes (0.11.0, feed_note).
bool tally_deltas_in_use();
// The count of entries ever appended, from the journal: the agents' latest
// sequences plus what forgotten agents counted (a SELECT of one int8; the
// definition of agent_journal_appended_entries_total).
#define APPENDED_FROM_JOURNAL_SQL                                                              \
  "SELECT (SELECT COALESCE(pg_catalog.sum(GREATEST(s.compacted_through, "                      \
  "  (SELECT pg_catalog.max(e.sequence) FROM agent_journal.entries e "                         \
  "   WHERE e.agent_id OPERATOR(pg_catalog.=) s.agent_id))), 0) FROM agent_journal.agent_state s)::pg_catalog.int8 " \
  "+ (SELECT COALESCE(pg_catalog.sum(f.value), 0) FROM agent_journal.tallies f "               \
  "   WHERE f.name OPERATOR(pg_catalog.=) 'forgotten_appended_entries')::pg_catalog.int8"
// feed.cpp: how far an agent's feed covers its sequences (0.10.0): the
// last sequence of its feed and feed_pending rows that are not gaps, as a
// SELECT of one column `covered` (NULL: none); `agent` is an SQL
// expression.
#define FEED_COVERED_SQL(agent)                                                                  \
  "SELECT pg_catalog.max(x.last_sequence) AS covered FROM ("                                    \
  "  SELECT f.last_sequence FROM agent_journal.feed f "                                          \
  "  WHERE f.agent_id OPERATOR(pg_catalog.=) " agent " AND f.gap IS NULL "                       \
  "  UNION ALL SELECT p.last_sequence FROM agent_journal.feed_pending p "                        \
  "  WHERE p.agent_id OPERATOR(pg_catalog.=) " agent " AND p.gap IS NULL) x"
// Set by _PG_init when loaded by shared_preload_libraries.
extern bool preloaded;
// Sum of `name`'s rows in the current snapshot (0 if none).
int64 tally_sum(const char *name);
constexpr const char *TALLY_SAVED_STATES = "saved_states";
constexpr const char *TALLY_RETENTION_REMOVED = "retention_removed_entries";
constexpr const char *TALLY_FORGOTTEN_APPENDED = "forgotten_appended_entries";
constexpr const char *TALLY_FORGOTTEN_COMPACTED = "forgotten_compacted_entries";
// 0.6.0: the journal's own families without a walk of the agents (the
// upgrade script seeds them). live entries = appended - compacted -
// forgotten_live. journal_since: microseconds since the Unix epoch from
// which they count (their _created).
constexpr const char *TALLY_AGENTS = "journal_agents";
constexpr const char *TALLY_APPENDED = "journal_appended";
constexpr const char *TALLY_COMPACTED = "journal_compacted";
constexpr const char *TALLY_FORGOTTEN_LIVE = "journal_forgotten_live";
constexpr const char *TALLY_SINCE = "journal_since";
// 0.9.0: lease takeovers on a distributed journal (on one server they are
// the series of agent_journal_lease_takeovers_total in metric_series).
constexpr const char *TALLY_LEASE_TAKEOVERS = "lease_takeovers";

// feed.cpp (0.7.0; each does nothing on older schemas). Inside SPI as the
// owner: records that this transaction wrote first..last of `agent`;
// marks a forgotten agent's feed rows as a gap (under its lock).
// `carry`: the caller did not count them in journal_appended; true if the
// note took the count over (the caller must not count them then).
bool feed_note(Datum agent, int64 first, int64 last, bool carry = false);
void feed_forget(Datum agent, const Latest &l);
// The worker: one tick in a transaction of its own (NOTIFY when it moved
// rows); inside SPI, rows of the feed nobody needs any more.
void feed_tick_step();
int64 feed_prune();
extern int feed_tick_interval_ms;

// retention.cpp: one pass of the background worker (commits per agent).
void retention_cycle();
extern int retention_interval_s;

// What a statement sees: the user, the command, and the transactions its
// snapshot counts as committed. Two equal keys see the same rows, so an
// answer computed under one may be reused under the other (journal.cpp).
struct AnswerKey {
  Oid user;
  LocalTransactionId lxid;
  CommandId curcid;
  TransactionId xmin, xmax;
  uint32 xcnt;
  int32 subxcnt;
  bool suboverflowed, in_recovery;
  bool operator==(const AnswerKey &o) const {
    return user == o.user && lxid == o.lxid && curcid == o.curcid && xmin == o.xmin &&
           xmax == o.xmax && xcnt == o.xcnt && subxcnt == o.subxcnt &&
           suboverflowed == o.suboverflowed && in_recovery == o.in_recovery;
  }
};

// The key of the active snapshot; false if there is none (or not MVCC).
bool answer_key(AnswerKey *k);

// Shared memory (exporter.cpp; only when the library is preloaded).
void count_fenced_write();
bool fenced_writes(uint64 *count, TimestampTz *since);

// metrics.cpp: adds 1 to one of the extension's own counters (a reserved
// name, no labels), inside SPI as the owner.
void count_internal(const char *name, const char *help);
// Deletes the series (and their slots) nobody wrote for longer than
// agent_journal.series_ttl, the extension's own excepted (0.6.0 schema;
// 0 elsewhere); inside SPI as the owner. Returns how many series.
int64 expire_series();

}  // namespace ajpg
