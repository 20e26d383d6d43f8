// Metric name, label and bucket rules shared by the SQL functions that
// register metrics and by every renderer. Pure C++17: never includes a
// PostgreSQL header.
//
// Every error is a std::invalid_argument whose what() starts with the
// argument it is about, e.g.
//   name: "Foo" is not a valid metric name: must match [a-z_][a-z0-9_]*
//   labels.le: label name "le" is reserved
//   buckets[2]: NaN is not a valid bucket bound
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/model.hpp"

namespace aj {

constexpr std::size_t kMaxMetricNameBytes = 200;
constexpr std::size_t kMaxLabelNameBytes = 200;
constexpr std::size_t kMaxLabelValueBytes = 4096;
constexpr std::size_t kMaxBuckets = 100;  // finite bounds; +Inf is implicit

// `[a-z_][a-z0-9_]*`, at most kMaxMetricNameBytes. Counters must end in
// `_total` (with something before it); gauges and histograms must not end
// in `_total`, `_count`, `_sum`, `_bucket`, `_created` or `_info`.
// Path `name`.
void validate_metric_name(const std::string &name, MetricType type);

// True for names starting with `agent_runtime_` or `agent_journal_`: those
// belong to the extension's own families and are refused from users.
bool is_reserved_metric_name(const std::string &name);

// `[a-zA-Z_][a-zA-Z0-9_]*`, not starting with `__`, not `le` or `quantile`,
// at most kMaxLabelNameBytes. Path `labels.<name>`.
void validate_label_name(const std::string &name);

// Valid UTF-8 without NUL, at most kMaxLabelValueBytes. Path `labels.<name>`.
void validate_label_value(const std::string &name, const std::string &value);

// OpenMetrics: an exemplar's label names and values together are at most
// 128 UTF-8 characters.
constexpr std::size_t kMaxExemplarLabelChars = 128;

// An exemplar's labels: the label name and value rules (paths
// `exemplar.<name>`; `le` and `quantile` are allowed there), no name given
// twice, at least one label, at most kMaxExemplarLabelChars characters in
// all (path `exemplar`). Returns them sorted by name, empty values kept.
Labels normalize_exemplar_labels(Labels labels);

// Validates every name and value, rejects a name given twice, drops pairs
// whose value is empty (Prometheus treats an empty value as an absent
// label) and sorts by name.
Labels normalize_labels(Labels labels);

// Label names that passed the checks of normalize_label_span or
// normalize_exemplar_label_span, remembered by where their bytes are:
// a loader that shares one name's bytes between the series of a family
// has them checked once. Keep one per kind (series labels, exemplar labels:
// their rules differ) and per model whose bytes stay put.
struct KnownNames {
  static constexpr std::size_t kSize = 8;
  const char *data[kSize] = {};
  std::size_t size[kSize] = {};
  std::size_t next = 0;
  bool has(std::string_view n) const {
    for (std::size_t k = 0; k < kSize; ++k)
      if (data[k] == n.data() && size[k] == n.size() && !n.empty()) return true;
    return false;
  }
  void add(std::string_view n) {
    data[next] = n.data();
    size[next] = n.size();
    next = (next + 1) % kSize;
  }
};

// normalize_labels and normalize_exemplar_labels for labels kept in an
// arena: false where those throw. `labels` is pointed at a new array in
// `arena` only when the result differs (unsorted, empty values dropped);
// the array it viewed is never written.
bool normalize_label_span(Span<Label> &labels, Arena &arena, KnownNames *known = nullptr);
bool normalize_exemplar_label_span(Span<Label> &labels, Arena &arena, KnownNames *known = nullptr);

// The sample names the family writes in the Prometheus text exposition,
// plus the family's own name: counter/gauge `x` -> {x}; histogram `x` ->
// {x, x_bucket, x_sum, x_count}.
std::vector<std::string> derived_sample_names(const std::string &name, MetricType type);

// Every name the family claims in any exposition (used for collisions):
// derived_sample_names, plus for OpenMetrics the counter family name without
// `_total` and the `_created` series of counters and histograms. Counter
// `x_total` -> {x_total, x, x_created}; histogram `x` -> {x, x_bucket, x_sum,
// x_count, x_created}; gauge `x` -> {x}.
std::vector<std::string> occupied_names(const std::string &name, MetricType type);

// Throws (path `name`) when the new family claims a name that one of
// `existing` (name, type) claims too, e.g. histogram `x` vs gauge `x_count`,
// or counter `x_total` vs gauge `x`. A family of the same name counts as a
// collision: leave the family itself out of `existing` when re-checking it.
void check_family_collision(const std::string &name, MetricType type,
                            const std::vector<std::pair<std::string, MetricType>> &existing);

// {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}
std::vector<double> default_buckets();

// Histogram upper bounds: a trailing +Inf is removed (it is implicit); then
// at least one and at most kMaxBuckets bounds, finite, strictly increasing.
// Paths `buckets` and `buckets[i]` (index into the given vector).
std::vector<double> validate_buckets(std::vector<double> bounds);

// True if every byte is in 0x01..0x7F (so valid UTF-8 without a NUL).
bool is_plain_ascii(std::string_view s);
// Strict UTF-8 (no overlong forms, surrogates or code points past U+10FFFF).
bool is_valid_utf8(std::string_view s);

// `s` as a double-quoted string fit for an error message: at most ~64 bytes
// (then "..."), `"` and `\` escaped, bytes outside printable ASCII as \xNN.
std::string quote_for_message(std::string_view s);

}  // namespace aj
