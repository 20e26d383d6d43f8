# Shared helpers for tests/scripts/*.sh (sourced). The test runner exports
# PGHOST/PGPORT/PGUSER for the throwaway cluster and AJ_ROOT/AJ_OUT.
set -euo pipefail
AJ_ROOT=${AJ_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
TMPD=$(mktemp -d /tmp/aj_script.XXXXXX)
chmod 755 "$TMPD"
trap 'rm -rf "$TMPD"' EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }
# q DB SQL: one value, unaligned
q() { psql -X -v ON_ERROR_STOP=1 -At -d "$1" -c "$2"; }
fresh_db() {
  dropdb --if-exists "$1" >/dev/null 2>&1 || true
  createdb "$1"
  q "$1" "CREATE EXTENSION agent_journal" >/dev/null
}
expect_eq() {  # expect_eq WHAT GOT WANT
  if [ "$2" != "$3" ]; then fail "$1: got '$2', want '$3'"; fi
  ok "$1 = $3"
}
# wait_for SECONDS WHAT COMMAND...: polls COMMAND (every AJ_POLL seconds,
# default 0.2) until it succeeds; fails after SECONDS.
wait_for() {
  local limit=$1 what=$2 deadline
  shift 2
  deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || fail "timed out after ${limit}s waiting for: $what"
    sleep "${AJ_POLL:-0.2}"
  done
  ok "$what"
}
# wait_writers SECONDS PID...: waits for writer processes (numbered 1.. in
# the order given, their errors in $TMPD/w<n>.err) to exit, at most SECONDS
# for all; fails naming the first that does not stop or exits non-zero.
wait_writers() {
  local end=$((SECONDS + $1)) i=0 p
  shift
  for p in "$@"; do
    i=$((i + 1))
    while kill -0 "$p" 2>/dev/null; do
      [ $SECONDS -lt $end ] || fail "writer $i did not stop"
      sleep 0.1
    done
    wait "$p" || { tail -5 "$TMPD/w$i.err" >&2; fail "writer $i failed"; }
  done
}
