// Rendering metric families as Prometheus text (0.0.4), OpenMetrics 1.0
// text and an OTLP/HTTP JSON ExportMetricsServiceRequest. Pure C++17: never
// includes a PostgreSQL header.
//
// All three renderers run the same prepare step (prepare_families), so a
// given model yields the same series, in the same order, in every format.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/model.hpp"

namespace aj {

// The family every render appends, one series per reason.
constexpr const char *kDroppedFamilyName = "agent_journal_render_dropped_series";
// The OTLP instrumentation scope.
constexpr const char *kOtlpScopeName = "agent_journal";
// The scope version when RenderOptions::scope_version is empty (the
// library's render reads pg_extension.extversion instead).
constexpr const char *kOtlpScopeVersion = "unknown";
// service.name of the OTLP resource for series without a `service` label.
constexpr const char *kOtlpDefaultService = "agent_journal";

struct RenderOptions {
  // Series kept per family (the first ones in label order); 0 = no limit.
  std::size_t max_series_per_family = 10000;
  // Polled every ~1000 series; returning true stops the render with
  // Cancelled. May be null.
  bool (*interrupted)() = nullptr;
  // OTLP: the instrumentation scope's version (the installed schema's) and
  // the resources' service.namespace (left out when empty).
  std::string scope_version;
  std::string service_namespace;
  // Where the *_buffer renders keep their text (null: malloc / free), so
  // that a caller can have it where its result must be: `allocate` returns
  // null when out of memory (the render then throws std::bad_alloc) and
  // neither throws nor jumps; `release` frees what it gave.
  void *(*allocate)(std::size_t bytes) = nullptr;
  void (*release)(void *p) = nullptr;
};

// Thrown when RenderOptions::interrupted returned true.
struct Cancelled : std::exception {
  const char *what() const noexcept override { return "render canceled"; }
};

// A render's text in a buffer of its own (RenderOptions::allocate's, else
// malloc'd), NUL-terminated: the *_buffer renders give it without a copy
// into a std::string (whose bytes would be zeroed before being written).
struct RenderedText {
  std::unique_ptr<char, void (*)(void *)> bytes{nullptr, std::free};
  std::size_t size = 0;
  const char *c_str() const { return bytes ? bytes.get() : ""; }
  std::string_view view() const { return std::string_view(c_str(), size); }
};

// As Prometheus writes floats (Go's strconv 'g', shortest): NaN, +Inf,
// -Inf, else the shortest decimal that round-trips through strtod, in
// exponent form when the exponent is < -4 or >= 6 (5, 0.1, 123456, 1e+06,
// 1.5e-07).
std::string format_double(double v);

// Label value for both text formats: \ -> \\, " -> \", newline -> \n.
std::string escape_label_value(std::string_view s);
// HELP text in Prometheus 0.0.4: \ -> \\, newline -> \n (quotes stay as
// they are: the 0.0.4 parser rejects \").
std::string escape_help(std::string_view s);
// HELP text in OpenMetrics: \ -> \\, " -> \", newline -> \n.
std::string escape_help_openmetrics(std::string_view s);

// The prepare step every renderer runs first, in place:
//  - families sorted by name (stable), series by labels (lexicographic over
//    the (name, value) pairs, stable), labels normalized (normalize_labels);
//  - dropped as Dropped::invalid: every series of a family whose name is
//    invalid for its type (validate_metric_name) or whose histogram bounds
//    are not finite and strictly increasing; series whose labels fail
//    normalize_labels; counters whose value is NaN or negative; histogram
//    series with bucket_counts.size() != bounds.size() + 1 or whose
//    bucket_counts do not add up to `count`;
//  - dropped as Dropped::duplicate: a series whose normalized labels equal an
//    earlier one of its family; every series of a family that claims a name
//    (occupied_names) an earlier family already claims -- same name included,
//    no merging -- or that the dropped family claims;
//  - dropped as Dropped::cardinality: series past max_series_per_family;
//  - families left without series are removed; an empty or non-UTF-8 HELP
//    becomes "<name> (no help given)";
//  - then the gauge family kDroppedFamilyName is appended (help "Series left
//    out of this render, by reason"), series reason="cardinality",
//    "duplicate", "invalid" with the counts, zeros included.
// Returns the counts. Throws Cancelled.
Dropped prepare_families(std::vector<Family> &families, const RenderOptions &options);

// Prometheus text format 0.0.4: `# HELP`, `# TYPE`, then the samples, no
// timestamps; histograms as cumulative `_bucket` series (le last), `_sum`,
// `_count`. Ends with a newline. Throws Cancelled.
std::string render_prometheus(std::vector<Family> families, const RenderOptions &options,
                              Dropped *dropped = nullptr);
RenderedText render_prometheus_buffer(std::vector<Family> families, const RenderOptions &options,
                                      Dropped *dropped = nullptr);

// OpenMetrics 1.0 text: counter families named without `_total` in the
// metadata, samples `x_total`; floats with ".0" when integral (as
// client_golang writes them); ends with `# EOF`. A histogram whose sum is
// NaN or negative, or that has a negative bound, is written without `_sum`
// and `_count` (OpenMetrics forbids them there). Throws Cancelled.
std::string render_openmetrics(std::vector<Family> families, const RenderOptions &options,
                               Dropped *dropped = nullptr);
RenderedText render_openmetrics_buffer(std::vector<Family> families, const RenderOptions &options,
                                       Dropped *dropped = nullptr);

// OTLP/HTTP JSON ExportMetricsServiceRequest. Series labelled `service` go
// to the resource with that service.name (the label leaves the attributes),
// the others to service.name kOtlpDefaultService; resources sorted by
// service.name. When `only_service` is non-null only its resource is
// written (resourceMetrics may be empty). Counters become cumulative
// monotonic sums named without `_total`, gauges gauges, histograms
// cumulative histograms. int64/uint64 as JSON strings; NaN/+Inf/-Inf as
// "NaN"/"Infinity"/"-Infinity". Throws Cancelled.
std::string render_otlp_json(std::vector<Family> families, const std::string *only_service,
                             int64_t time_unix_nano, const RenderOptions &options,
                             Dropped *dropped = nullptr);
RenderedText render_otlp_json_buffer(std::vector<Family> families, const std::string *only_service,
                                     int64_t time_unix_nano, const RenderOptions &options,
                                     Dropped *dropped = nullptr);

}  // namespace aj
