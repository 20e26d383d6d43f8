// Module entry: the magic block and the GUCs (agent_journal.*).
#include "pg/citus.hpp"
#include "pg/exporter.hpp"
#include "pg/journal.hpp"
#include "pg/pg.hpp"

extern "C" {
PG_MODULE_MAGIC;
void _PG_init(void);
}

namespace ajpg {
int max_event_bytes = 8 * 1024 * 1024;
int max_series_per_family = 10000;
int snapshot_max_age_seconds = 0;
char *service_namespace = nullptr;
int series_ttl_s = 0;
bool preloaded = false;
}  // namespace ajpg

void _PG_init(void) {
  DefineCustomIntVariable(
      "agent_journal.max_event_bytes",
      "Largest event (uncompressed jsonb size) that append and append_batch accept.",
      "Larger events are rejected with SQLSTATE 54000.", &ajpg::max_event_bytes,
      8 * 1024 * 1024, 1, MaxAllocSize / 2, PGC_SUSET, GUC_UNIT_BYTE, nullptr, nullptr,
      nullptr);
  DefineCustomIntVariable(
      "agent_journal.max_series_per_family",
      "Most series rendered per metric family; the rest are dropped and counted.",
      nullptr, &ajpg::max_series_per_family, 10000, 1, INT_MAX, PGC_SUSET, 0, nullptr,
      nullptr, nullptr);
  DefineCustomIntVariable(
      "agent_journal.snapshot_max_age",
      "A service whose current snapshot is older than this is not rendered (0 = no limit).",
      nullptr, &ajpg::snapshot_max_age_seconds, 0, 0, INT_MAX, PGC_SUSET, GUC_UNIT_S,
      nullptr, nullptr, nullptr);
  // The exporter (exporter.cpp): a background worker when preloaded.
  DefineCustomIntVariable(
      "agent_journal.export_interval",
      "Seconds between two exports of the exporter background worker.", nullptr,
      &ajpg::export_interval_s, 15, 1, 86400, PGC_SIGHUP, GUC_UNIT_S, nullptr, nullptr, nullptr);
  DefineCustomStringVariable(
      "agent_journal.export_database",
      "Database whose metrics the exporter background worker exports.",
      "The extension must be installed there. A change restarts the worker.",
      &ajpg::export_database, "postgres", PGC_SIGHUP, 0, nullptr, nullptr, nullptr);
  DefineCustomStringVariable(
      "agent_journal.textfile_path",
      "File the exporter writes the Prometheus exposition to (empty = off).",
      "An absolute path ending in .prom, in node_exporter's textfile collector directory; "
      "replaced atomically, mode 0644.",
      &ajpg::textfile_path, "", PGC_SIGHUP, 0, ajpg::check_textfile_path, nullptr, nullptr);
  DefineCustomStringVariable(
      "agent_journal.otlp_endpoint",
      "OTLP/HTTP endpoint the exporter pushes metrics to (empty = off).",
      "An http:// or https:// URL; the exporter POSTs JSON to <endpoint>/v1/metrics.",
      &ajpg::otlp_endpoint, "", PGC_SIGHUP, 0, ajpg::check_otlp_endpoint, nullptr, nullptr);
  DefineCustomIntVariable(
      "agent_journal.otlp_timeout",
      "Timeout of one OTLP push (connect and transfer).", nullptr, &ajpg::otlp_timeout_ms, 5000,
      100, 600000, PGC_SIGHUP, GUC_UNIT_MS, nullptr, nullptr, nullptr);
  DefineCustomStringVariable(
      "agent_journal.otlp_headers",
      "Extra HTTP headers of OTLP pushes, as key=value pairs separated by commas.",
      "As OTEL_EXPORTER_OTLP_HEADERS: \"Authorization=Bearer x,X-Tenant=a\"; values are "
      "percent-decoded (%2C for a comma). Visible to superusers only.",
      &ajpg::otlp_headers, "", PGC_SIGHUP, GUC_SUPERUSER_ONLY, ajpg::check_otlp_headers, nullptr,
      nullptr);
  DefineCustomStringVariable(
      "agent_journal.service_namespace",
      "service.namespace of the OTLP resources (empty = left out).",
      "Reported next to service.name, as agent runtimes report it.", &ajpg::service_namespace, "",
      PGC_SUSET, 0, nullptr, nullptr, nullptr);
  DefineCustomIntVariable(
      "agent_journal.retention_interval",
      "Seconds between two retention passes of the background worker (0 = none).",
      "Each pass applies the retention policies, committing after each agent.",
      &ajpg::retention_interval_s, 60, 0, 86400, PGC_SIGHUP, GUC_UNIT_S, nullptr, nullptr,
      nullptr);
  DefineCustomIntVariable(
      "agent_journal.series_ttl",
      "A metric series not written for longer is left out of every render (0 = never).",
      "The background worker deletes such series (their families stay). The extension's own "
      "families are never expired.",
      &ajpg::series_ttl_s, 0, 0, INT_MAX, PGC_SUSET, GUC_UNIT_S, nullptr, nullptr, nullptr);
  DefineCustomIntVariable(
      "agent_journal.feed_tick_interval",
      "Milliseconds between two feed ticks of the background worker (0 = none).",
      "A tick gives the appends committed since the last one their feed positions and sends "
      "NOTIFY agent_journal_feed when there were any.",
      &ajpg::feed_tick_interval_ms, 100, 0, 3600000, PGC_SIGHUP, GUC_UNIT_MS, nullptr, nullptr,
      nullptr);
  MarkGUCPrefixReserved("agent_journal");
  ajpg::install_planner_hook();
  if (process_shared_preload_libraries_in_progress) {
    ajpg::preloaded = true;
    ajpg::exporter_register();
  }
}
