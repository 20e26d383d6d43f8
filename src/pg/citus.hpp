// Citus (issue 11). agent_journal reads and writes its tables directly
// (heap and index access, ExecSimpleRelationInsert, in-place updates). On
// a Citus node a distributed or reference table is a "shell" that holds
// none of the rows: they live in shards. A direct write there would be
// acknowledged and then found nowhere; a direct read would find nothing.
#pragma once

#include "pg/pg.hpp"

namespace ajpg {

// ERROR 0A000 (its hint points to docs/scaling.md) when any table in
// the extension's schema `nsp` is managed by Citus (distributed,
// reference or Citus-local), a layout agent_journal does not support yet.
// Called wherever the extension looks up the relations it accesses
// directly (once per transaction); costs one branch when Citus is not in
// shared_preload_libraries (Citus cannot run otherwise).
void refuse_citus_layout(Oid nsp);

}  // namespace ajpg
