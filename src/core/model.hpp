// The metric model shared by every rendering (Prometheus text, OpenMetrics,
// OTLP JSON). Pure C++17: never includes a PostgreSQL header.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace aj {

enum class MetricType { Counter, Gauge, Histogram };

const char *type_name(MetricType t);  // "counter", "gauge", "histogram"

// Label pairs (name, value). Renderers expect them sorted by name with no
// empty values (see normalize_labels in names.hpp).
using Labels = std::vector<std::pair<std::string, std::string>>;

// The latest observation behind a sample, with labels that link it to its
// cause (a trace, a journal entry): OpenMetrics exemplars, OTLP exemplars.
struct Exemplar {
  std::size_t bucket = 0;  // histogram: the bucket's index (0-based); counter: 0
  Labels labels;           // sorted by name, as normalize_labels leaves them
  double value = 0;        // the observed value (histogram) or increment (counter)
  double timestamp = 0;    // Unix epoch seconds of the observation
};

struct Series {
  Labels labels;
  // Counter / gauge: the value.
  double value = 0;
  // Histogram: per-bucket counts, NOT cumulative, one per Family::bounds
  // entry plus a last one for +Inf (size == bounds.size() + 1).
  std::vector<uint64_t> bucket_counts;
  double sum = 0;
  uint64_t count = 0;
  // Counter / histogram: when the series started counting (Unix epoch
  // seconds; 0 = unknown): OpenMetrics `_created`, OTLP startTimeUnixNano.
  double created = 0;
  // Counter / histogram: at most one per bucket (counter: bucket 0).
  std::vector<Exemplar> exemplars;
};

struct Family {
  std::string name;  // for counters, the full name ending in _total
  MetricType type = MetricType::Gauge;
  std::string help;           // never empty when rendered
  std::vector<double> bounds; // histogram upper bounds, strictly increasing, finite
  std::vector<Series> series;
};

// Why a series was left out of a render.
struct Dropped {
  uint64_t duplicate = 0;    // same family + labels twice after normalization
  uint64_t cardinality = 0;  // family over max_series_per_family
  uint64_t invalid = 0;      // bad name/labels/histogram shape found at render
};

}  // namespace aj
