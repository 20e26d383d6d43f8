// The exporter: a background worker (registered when agent_journal is in
// shared_preload_libraries) that every agent_journal.export_interval
// renders the exposition of agent_journal.export_database, writes it to
// agent_journal.textfile_path for node_exporter's textfile collector and
// pushes the OTLP JSON to agent_journal.otlp_endpoint. Its health lives in
// shared memory and is rendered with every exposition (exporter.cpp).
#pragma once

#include "pg/pg.hpp"

#include <vector>

#include "core/model.hpp"

namespace ajpg {

// GUCs (defined in module.cpp).
extern int export_interval_s;
extern char *export_database;
extern char *textfile_path;
extern char *otlp_endpoint;
extern int otlp_timeout_ms;
extern char *otlp_headers;

// GUC check hooks.
bool check_textfile_path(char **newval, void **extra, GucSource source);
bool check_otlp_endpoint(char **newval, void **extra, GucSource source);
bool check_otlp_headers(char **newval, void **extra, GucSource source);

// From _PG_init while shared_preload_libraries is processed: requests the
// shared memory (shmem_request_hook) and registers the worker.
void exporter_register();

// Appends the exporter's health families (agent_journal_export_*) to
// `families` when the shared memory exists (library preloaded), one series
// per enabled target. Reads shared memory only. Returns false with the
// message in `err` if the C++ part threw; the caller ereports.
bool aj_exporter_health(std::vector<aj::Family> *families, char *err, size_t errlen);

}  // namespace ajpg

extern "C" PGDLLEXPORT void aj_exporter_main(Datum arg);
