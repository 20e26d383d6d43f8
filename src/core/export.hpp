// What the exporter (the background worker in src/pg/exporter.cpp) needs
// from the core: its health families, the OTLP/HTTP URL and the parsing of
// agent_journal.otlp_headers. Pure C++17: never includes a PostgreSQL
// header.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/model.hpp"

namespace aj {

constexpr const char *kExportLastSuccessFamily =
    "agent_journal_export_last_success_timestamp_seconds";
constexpr const char *kExportErrorsFamily = "agent_journal_export_errors_total";

// One export target of the worker ("textfile", "otlp").
struct ExportTargetHealth {
  std::string target;
  double last_success_seconds = 0;  // Unix time of the last success, 0 = never
  uint64_t errors = 0;              // failed exports since the server started
};

// Appends the gauge kExportLastSuccessFamily and the counter
// kExportErrorsFamily, one series per target (label target="..."). Appends
// nothing when `targets` is empty.
void append_export_families(const std::vector<ExportTargetHealth> &targets,
                            std::vector<Family> &out);

// Validates agent_journal.otlp_endpoint: "http://" or "https://" (any case)
// followed by a host, no whitespace or control characters, at most 2048
// bytes. The empty string is valid (off). Throws std::invalid_argument
// naming "otlp_endpoint".
void validate_otlp_endpoint(std::string_view endpoint);

// The OTLP/HTTP metrics URL for an endpoint, as the OpenTelemetry exporters
// build it from OTEL_EXPORTER_OTLP_ENDPOINT: trailing slashes removed, then
// "/v1/metrics" appended. Validates first.
std::string otlp_metrics_url(std::string_view endpoint);

// Parses agent_journal.otlp_headers, the format of OTEL_EXPORTER_OTLP_HEADERS:
// comma-separated key=value pairs, e.g. "Authorization=Bearer x,X-Tenant=a".
// Blanks around keys and values are trimmed, empty items are skipped, values
// are percent-decoded (%2C for a comma, %3D for '='). Keys must be HTTP
// tokens; decoded values must not contain CR, LF or NUL. Throws
// std::invalid_argument naming "otlp_headers" and the item.
std::vector<std::pair<std::string, std::string>> parse_otlp_headers(std::string_view headers);

}  // namespace aj
