// Citus (issue 11). agent_journal reads and writes its tables directly
// (heap and index access, ExecSimpleRelationInsert, in-place updates). On
// a Citus node a distributed or reference table is a "shell" that holds
// none of the rows: they live in shards. A direct write there would be
// acknowledged and then found nowhere; a direct read would find nothing.
//
// The one supported distributed layout is the one agent_journal.distribute()
// makes: the per-agent tables (DIST_TABLES) hash-distributed by agent_id,
// co-located. There the journal's functions work on the agent's shards,
// on the node that holds them (Citus delegates the calls there); any other
// layout is refused before anything is read or written.
#pragma once

#include "pg/pg.hpp"

namespace ajpg {

// The per-agent tables distribute() distributes, co-located, by agent_id.
extern const char *const DIST_TABLES[];
extern const int N_DIST_TABLES;
// The tables distribute() makes reference tables (from 0.9.0): the same
// rows on every node (access_grants: the admin level holds everywhere).
extern const char *const REF_TABLES[];
extern const int N_REF_TABLES;

// false: no table of the extension's schema `nsp` is managed by Citus (or
// Citus is not preloaded: one branch). true: the supported distributed
// layout. ERROR 0A000 (hint: distribute(), docs/scaling.md) for any other
// layout. Checked once per transaction.
bool journal_distributed(Oid nsp);
// Citus is in shared_preload_libraries (fixed at start; one branch after
// the first call): only then can the journal be distributed.
bool citus_preloaded();

// In the distributed layout: the shard of agent_journal.<table> that holds
// `agent`, if it is placed on this node (its relation's OID), else ERROR
// 0A000 naming the node that holds it. The shard is found as Citus finds
// it: the uuid's hash (uuid_hash) within the shard's hash range.
// With `index` (a constraint or index of the table): its shard's OID too.
Oid agent_shard_rel(Oid nsp, const char *table, const pg_uuid_t *agent, const char *index = nullptr,
                    Oid *index_oid = nullptr);

// In the distributed layout, under the agent's lock, before a writer
// reads or writes: takes the lock Citus's writers take on the agent's
// shard group (ShareLock on its colocated-shards metadata lock; a shard
// move or split holds it in ExclusiveLock until its new placement is
// committed), so the shards cannot move away under the write. When the
// lock was not held yet, reads the placements again and, if the shards
// moved away meanwhile, ERROR 40001 (retry: Citus sends the call to the new
// node). Returns true when it read the placements again (the caller then
// maps the agent's relations anew).
bool lock_agent_shard(Oid nsp, const pg_uuid_t *agent);
// In the distributed layout: are the agent's shards placed on this node?
bool agent_is_local(Oid nsp, const pg_uuid_t *agent);
// Does the agent live on another node of a distributed journal (so a
// reader goes through Citus)? One branch without Citus.
bool agent_elsewhere(const pg_uuid_t *agent);

// journal_distributed() of the installed schema (false without one; one
// branch without Citus).
bool agent_journal_distributed();
// Some table of the installed schema is managed by Citus, in a layout
// supported or not (no error: for the background worker, which then stays
// idle rather than log the refusal every tick).
bool agent_journal_on_citus();
// The local shard relation of a reference table of the schema (its only
// shard, placed on every node in Citus's metadata); InvalidOid if it is not
// a Citus table or has no placement here.
Oid reference_shard_rel(Oid nsp, const char *table);
// This node is the Citus coordinator (its group is 0).
bool on_coordinator();
// In the distributed layout, on a worker: ERROR 0A000 "<what> run on the
// coordinator", naming it. The metric tables (counter_add, the renders)
// live on the coordinator only.
void require_coordinator(Oid nsp, const char *what);

// Kept for callers that read tables without an agent (renders, the feed):
// ERROR 0A000 in any Citus layout (also the supported one, for now).
void refuse_citus_layout(Oid nsp);

// _PG_init: the planner hook that refuses a NULL agent on a distributed
// journal before Citus's planner crashes on it (citus.cpp).
void install_planner_hook();

}  // namespace ajpg
