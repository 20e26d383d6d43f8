// The metric model shared by every rendering (Prometheus text, OpenMetrics,
// OTLP JSON). Pure C++17: never includes a PostgreSQL header.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace aj {

enum class MetricType { Counter, Gauge, Histogram };

const char *type_name(MetricType t);  // "counter", "gauge", "histogram"

// Label pairs (name, value), owning their strings: what the name rules
// (normalize_labels in names.hpp) take and give.
using Labels = std::vector<std::pair<std::string, std::string>>;

// A label as the model keeps it: views of bytes in an Arena.
using Label = std::pair<std::string_view, std::string_view>;

// `count` elements at `data`, in memory an Arena owns. Published contents
// are never changed (copies of a Family share them): a step that would
// change them (the prepare step's sorting, filtering) writes a new array
// and points the span there.
template <typename T>
struct Span {
  T *data = nullptr;
  uint32_t count = 0;
  T *begin() const { return data; }
  T *end() const { return data + count; }
  std::size_t size() const { return count; }
  bool empty() const { return count == 0; }
  T &operator[](std::size_t i) const { return data[i]; }
};

// Bytes and trivially destructible arrays that live as long as the Arena:
// filled by the model's builders (the SQL loader, the snapshot families),
// freed in one go, a block at a time. Never moves what it handed out.
class Arena {
 public:
  Arena() = default;
  Arena(const Arena &) = delete;
  Arena &operator=(const Arena &) = delete;

  void *allocate(std::size_t bytes, std::size_t align) {
    const std::size_t pad = (align - reinterpret_cast<std::uintptr_t>(cur_) % align) % align;
    if (cur_ == nullptr || pad + bytes > left_ || bytes == 0) return allocate_slow(bytes, align);
    char *p = cur_ + pad;
    cur_ = p + bytes;
    left_ -= pad + bytes;
    return p;
  }
  template <typename T>
  T *array(std::size_t n) {
    return static_cast<T *>(allocate(sizeof(T) * n, alignof(T)));
  }
  std::string_view str(std::string_view s);
  // A copy of `labels` (strings included), in the given order.
  Span<Label> labels(const Labels &labels);
  Span<Label> labels(std::initializer_list<std::pair<std::string_view, std::string_view>> labels);

 private:
  void *allocate_slow(std::size_t bytes, std::size_t align);
  std::vector<std::unique_ptr<char[]>> blocks_;
  char *cur_ = nullptr;
  std::size_t left_ = 0;
  std::size_t next_block_ = 4096;
};

// The labels of a span as owning pairs.
Labels to_labels(Span<Label> labels);

// The latest observation behind a sample, with labels that link it to its
// cause (a trace, a journal entry): OpenMetrics exemplars, OTLP exemplars.
struct Exemplar {
  std::size_t bucket = 0;  // histogram: the bucket's index (0-based); counter: 0
  Span<Label> labels;      // sorted by name, as normalize_exemplar_labels leaves them
  double value = 0;        // the observed value (histogram) or increment (counter)
  double timestamp = 0;    // Unix epoch seconds of the observation
};

struct Series {
  // Renderers expect them sorted by name with no empty values (the
  // prepare step normalizes them as normalize_labels does).
  Span<Label> labels;
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
  Span<Exemplar> exemplars;
};

struct Family {
  std::string name;  // for counters, the full name ending in _total
  MetricType type = MetricType::Gauge;
  std::string help;           // never empty when rendered
  std::vector<double> bounds; // histogram upper bounds, strictly increasing, finite
  std::vector<Series> series;
  // Where the series' labels and exemplars live, and where the prepare step
  // writes what it changes; shared by copies of the family (so a family is
  // not for two threads at once). A builder may also point series at an
  // arena of its own that outlives the render (the SQL loader's slot
  // exemplars, the unit tests').
  std::shared_ptr<Arena> arena;
  Arena &store() {
    if (!arena) arena = std::make_shared<Arena>();
    return *arena;
  }
};

// Why a series was left out of a render.
struct Dropped {
  uint64_t duplicate = 0;    // same family + labels twice after normalization
  uint64_t cardinality = 0;  // family over max_series_per_family
  uint64_t invalid = 0;      // bad name/labels/histogram shape found at render
};

}  // namespace aj
