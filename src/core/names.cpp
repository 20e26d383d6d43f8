#include "core/names.hpp"

#include <cstring>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <new>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <stdexcept>

namespace aj {

const char *type_name(MetricType t) {
  switch (t) {
    case MetricType::Counter:
      return "counter";
    case MetricType::Gauge:
      return "gauge";
    case MetricType::Histogram:
      return "histogram";
  }
  return "unknown";
}

namespace {

bool ends_with(const std::string &s, std::string_view suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool starts_with(const std::string &s, std::string_view prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

bool is_lower_or_underscore(char c) { return (c >= 'a' && c <= 'z') || c == '_'; }
constexpr bool is_digit(char c) { return c >= '0' && c <= '9'; }
constexpr bool is_letter_or_underscore(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

// Label name bytes, one table lookup each: kNameStart for [a-zA-Z_],
// kNameRest for [a-zA-Z0-9_].
constexpr unsigned char kNameStart = 1, kNameRest = 2;
struct LabelNameTable {
  unsigned char c[256] = {};
  constexpr LabelNameTable() {
    for (int i = 0; i < 256; ++i) {
      const char ch = static_cast<char>(i);
      if (is_letter_or_underscore(ch)) c[i] = kNameStart | kNameRest;
      if (is_digit(ch)) c[i] = kNameRest;
    }
  }
};
constexpr LabelNameTable kLabelNameChars;

// The checks every label name must pass, label or exemplar: not empty, at
// most kMaxLabelNameBytes, [a-zA-Z_][a-zA-Z0-9_]*, not starting with `__`.
// True means the full checks (validate_label_name less `le` / `quantile`,
// normalize_exemplar_labels' loop) find nothing: they run only when this
// is false, to say why. Renders run this for every label of every series.
bool is_plain_label_name(std::string_view name) {
  if (name.empty() || name.size() > kMaxLabelNameBytes) return false;
  const auto *p = reinterpret_cast<const unsigned char *>(name.data());
  if ((kLabelNameChars.c[p[0]] & kNameStart) == 0) return false;
  for (std::size_t i = 1; i < name.size(); ++i) {
    if ((kLabelNameChars.c[p[i]] & kNameRest) == 0) return false;
  }
  return !(name.size() >= 2 && p[0] == '_' && p[1] == '_');
}

[[noreturn]] void fail(const std::string &path, const std::string &message) {
  throw std::invalid_argument(path + ": " + message);
}

std::string label_path(const std::string &name) {
  // Valid label names are printed as they are; anything else escaped.
  std::string quoted = quote_for_message(name);
  bool plain = quoted == "\"" + name + "\"";
  return "labels." + (plain ? name : quoted);
}

std::string format_bound(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[32];
  auto res = std::to_chars(buf, buf + sizeof buf, v);  // shortest round trip
  return std::string(buf, res.ptr);
}

constexpr std::string_view kReservedSuffixes[] = {"_total",  "_count",   "_sum",
                                                  "_bucket", "_created", "_info"};

}  // namespace

std::string quote_for_message(std::string_view s) {
  constexpr std::size_t kMax = 64;
  std::string out = "\"";
  std::size_t n = std::min(s.size(), kMax);
  for (std::size_t i = 0; i < n; ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c >= 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  out += '"';
  if (s.size() > kMax) out += "...";
  return out;
}

bool is_plain_ascii(std::string_view s) {
  constexpr uint64_t kHigh = 0x8080808080808080ULL, kOnes = 0x0101010101010101ULL;
  std::size_t i = 0;
  for (; i + 8 <= s.size(); i += 8) {
    uint64_t w;
    std::memcpy(&w, s.data() + i, 8);
    // A high bit set, or a zero byte ((w - 1s) & ~w & high is nonzero iff
    // some byte of w is zero, for bytes below 0x80).
    if ((w & kHigh) != 0 || ((w - kOnes) & ~w & kHigh) != 0) return false;
  }
  for (; i < s.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == 0 || c >= 0x80) return false;
  }
  return true;
}

bool is_valid_utf8(std::string_view s) {
  std::size_t i = 0;
  const std::size_t n = s.size();
  while (i < n) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t len;
    uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
      cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;  // continuation byte, overlong lead (C0, C1) or F5..FF
    }
    if (n - i < len) return false;
    for (std::size_t k = 1; k < len; ++k) {
      unsigned char cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000)) return false;  // overlong
    if (cp >= 0xD800 && cp <= 0xDFFF) return false;                            // surrogate
    if (cp > 0x10FFFF) return false;
    i += len;
  }
  return true;
}

void validate_metric_name(const std::string &name, MetricType type) {
  if (name.empty()) fail("name", "metric name must not be empty");
  if (name.size() > kMaxMetricNameBytes) {
    fail("name", "metric name is " + std::to_string(name.size()) + " bytes long, at most " +
                     std::to_string(kMaxMetricNameBytes) + " allowed");
  }
  bool ok = is_lower_or_underscore(name[0]);
  for (std::size_t i = 1; ok && i < name.size(); ++i) {
    ok = is_lower_or_underscore(name[i]) || is_digit(name[i]);
  }
  if (!ok) {
    fail("name",
         quote_for_message(name) + " is not a valid metric name: must match [a-z_][a-z0-9_]*");
  }
  if (type == MetricType::Counter) {
    if (!ends_with(name, "_total")) {
      fail("name", "counter name \"" + name + "\" must end in _total");
    }
    if (name.size() == std::string_view("_total").size()) {
      fail("name", "counter name \"" + name + "\" needs a name before the _total suffix");
    }
    return;
  }
  for (std::string_view suffix : kReservedSuffixes) {
    if (ends_with(name, suffix)) {
      fail("name", std::string(type_name(type)) + " name \"" + name + "\" must not end in " +
                       std::string(suffix) + " (reserved for counters and histograms)");
    }
  }
}

bool is_reserved_metric_name(const std::string &name) {
  return starts_with(name, "agent_runtime_") || starts_with(name, "agent_journal_");
}

void validate_label_name(const std::string &name) {
  if (const std::string_view n(name); is_plain_label_name(n) && n != "le" && n != "quantile") {
    return;
  }
  // The path is built only when a check fails: this runs for every label
  // of every series on each render.
  auto path = [&name] { return label_path(name); };
  if (name.empty()) fail(path(), "label name must not be empty");
  if (name.size() > kMaxLabelNameBytes) {
    fail(path(), "label name is " + std::to_string(name.size()) + " bytes long, at most " +
                   std::to_string(kMaxLabelNameBytes) + " allowed");
  }
  bool ok = is_letter_or_underscore(name[0]);
  for (std::size_t i = 1; ok && i < name.size(); ++i) {
    ok = is_letter_or_underscore(name[i]) || is_digit(name[i]);
  }
  if (!ok) {
    fail(path(), "label name " + quote_for_message(name) +
                   " is not valid: must match [a-zA-Z_][a-zA-Z0-9_]*");
  }
  if (starts_with(name, "__")) {
    fail(path(), "label name \"" + name + "\" is reserved: names starting with __ are internal");
  }
  if (name == "le" || name == "quantile") {
    fail(path(), "label name \"" + name + "\" is reserved");
  }
}

void validate_label_value(const std::string &name, const std::string &value) {
  // The path is built only when a check fails: this runs for every label
  // of every series on each render.
  auto path = [&name] { return label_path(name); };
  if (value.size() > kMaxLabelValueBytes) {
    fail(path(), "label value is " + std::to_string(value.size()) + " bytes long, at most " +
                   std::to_string(kMaxLabelValueBytes) + " allowed");
  }
  if (is_plain_ascii(value)) return;  // the common case: one pass, eight bytes at a time
  if (value.find('\0') != std::string::npos) fail(path(), "label value contains a nul byte");
  if (!is_valid_utf8(value)) fail(path(), "label value is not valid utf-8");
}

namespace {
std::size_t utf8_chars(std::string_view s) {
  std::size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

// a < b as std::string's < (bytes, then length), deciding on the first
// bytes inline when they differ.
bool name_less(std::string_view a, std::string_view b) {
  if (!a.empty() && !b.empty() && a[0] != b[0])
    return static_cast<unsigned char>(a[0]) < static_cast<unsigned char>(b[0]);
  return a < b;
}

// A stable insertion sort by name: series have a handful of labels, and
// std::stable_sort would allocate a buffer for every series of a render.
// A label out of place is moved once to a temporary and once into place
// (std::swap of strings costs several times more, once per step).
void sort_by_name(Labels &labels) {
  const auto less = [](const std::string &a, const std::string &b) { return name_less(a, b); };
  for (std::size_t i = 1; i < labels.size(); ++i) {
    if (!less(labels[i].first, labels[i - 1].first)) continue;
    Labels::value_type label = std::move(labels[i]);
    std::size_t j = i;
    do {
      labels[j] = std::move(labels[j - 1]);
      --j;
    } while (j > 0 && less(label.first, labels[j - 1].first));
    labels[j] = std::move(label);
  }
}

}  // namespace

Labels normalize_exemplar_labels(Labels labels) {
  if (labels.empty()) fail("exemplar", "must have at least one label");
  std::size_t chars = 0;
  for (const auto &label : labels) {
    const std::string &name = label.first;  // a named reference: lambdas cannot
    const std::string &value = label.second;  // capture structured bindings in C++17
    // The common case, one table lookup per name byte and a word-wise
    // ASCII scan of the value: nothing below can fail, and an ASCII string
    // has one character per byte.
    if (is_plain_label_name(name) && is_plain_ascii(value)) {
      chars += name.size() + value.size();
      continue;
    }
    // The path is built only when a check fails (renders run this for
    // every exemplar).
    auto path = [&name] {
      std::string q = quote_for_message(name);
      return "exemplar." + (q == "\"" + name + "\"" ? name : q);
    };
    bool ok = !name.empty() && name.size() <= kMaxLabelNameBytes && is_letter_or_underscore(name[0]);
    for (std::size_t i = 1; ok && i < name.size(); ++i)
      ok = is_letter_or_underscore(name[i]) || is_digit(name[i]);
    if (!ok) fail(path(), "label name " + quote_for_message(name) +
                            " is not valid: must match [a-zA-Z_][a-zA-Z0-9_]*");
    if (starts_with(name, "__"))
      fail(path(), "label name \"" + name + "\" is reserved: names starting with __ are internal");
    if (value.find('\0') != std::string::npos) fail(path(), "label value contains a nul byte");
    if (!is_valid_utf8(value)) fail(path(), "label value is not valid utf-8");
    chars += utf8_chars(name) + utf8_chars(value);
  }
  if (chars > kMaxExemplarLabelChars)
    fail("exemplar", "labels are " + std::to_string(chars) + " characters in all, at most " +
                         std::to_string(kMaxExemplarLabelChars) + " allowed (OpenMetrics)");
  sort_by_name(labels);
  for (std::size_t i = 1; i < labels.size(); ++i)
    if (labels[i].first == labels[i - 1].first)
      fail("exemplar." + labels[i].first, "label name \"" + labels[i].first + "\" given twice");
  return labels;
}

Labels normalize_labels(Labels labels) {
  for (const auto &[name, value] : labels) {
    validate_label_name(name);
    validate_label_value(name, value);
  }
  sort_by_name(labels);
  for (std::size_t i = 1; i < labels.size(); ++i) {
    if (labels[i].first == labels[i - 1].first) {
      fail(label_path(labels[i].first), "label name \"" + labels[i].first + "\" given twice");
    }
  }
  labels.erase(
      std::remove_if(labels.begin(), labels.end(), [](const auto &l) { return l.second.empty(); }),
      labels.end());
  return labels;
}

std::vector<std::string> derived_sample_names(const std::string &name, MetricType type) {
  if (type == MetricType::Histogram) {
    return {name, name + "_bucket", name + "_sum", name + "_count"};
  }
  return {name};
}

std::vector<std::string> occupied_names(const std::string &name, MetricType type) {
  std::vector<std::string> names = derived_sample_names(name, type);
  if (type == MetricType::Counter && ends_with(name, "_total")) {
    std::string base = name.substr(0, name.size() - std::string_view("_total").size());
    names.push_back(base);
    names.push_back(base + "_created");
  } else if (type == MetricType::Histogram) {
    names.push_back(name + "_created");
  }
  return names;
}

void check_family_collision(const std::string &name, MetricType type,
                            const std::vector<std::pair<std::string, MetricType>> &existing) {
  const std::vector<std::string> mine = occupied_names(name, type);
  for (const auto &[other_name, other_type] : existing) {
    for (const std::string &theirs : occupied_names(other_name, other_type)) {
      if (std::find(mine.begin(), mine.end(), theirs) != mine.end()) {
        fail("name", std::string(type_name(type)) + " \"" + name + "\" collides with " +
                         type_name(other_type) + " \"" + other_name + "\": both use the name \"" +
                         theirs + "\"");
      }
    }
  }
}

std::vector<double> default_buckets() {
  return {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
}

std::vector<double> validate_buckets(std::vector<double> bounds) {
  if (bounds.empty()) fail("buckets", "at least one bucket bound is required");
  if (std::isinf(bounds.back()) && bounds.back() > 0) bounds.pop_back();
  for (std::size_t i = 0; i < bounds.size(); ++i) {
    const std::string path = "buckets[" + std::to_string(i) + "]";
    double v = bounds[i];
    if (std::isnan(v)) fail(path, "NaN is not a valid bucket bound");
    if (std::isinf(v)) {
      if (v < 0) fail(path, "-Inf is not a valid bucket bound");
      fail(path, "+Inf is only allowed as the last bound");
    }
    if (i > 0 && !(v > bounds[i - 1])) {
      fail(path, "bounds must be strictly increasing: " + format_bound(v) + " does not exceed " +
                     format_bound(bounds[i - 1]));
    }
  }
  if (bounds.empty()) fail("buckets", "at least one finite bucket bound is required");
  if (bounds.size() > kMaxBuckets) {
    fail("buckets", std::to_string(bounds.size()) + " bounds given, at most " +
                        std::to_string(kMaxBuckets) + " allowed");
  }
  return bounds;
}

// --- the model's arena --------------------------------------------------

void *Arena::allocate_slow(std::size_t bytes, std::size_t align) {
  if (bytes == 0) bytes = 1;
  std::size_t pad = (align - reinterpret_cast<std::uintptr_t>(cur_) % align) % align;
  if (cur_ == nullptr || pad + bytes > left_) {
    // Blocks grow to 64 KiB; a larger request gets a block of its own.
    const std::size_t size = std::max(bytes + align, next_block_);
    if (next_block_ < 64 * 1024) next_block_ *= 2;
    blocks_.push_back(std::unique_ptr<char[]>(new char[size]));
    cur_ = blocks_.back().get();
    left_ = size;
    pad = (align - reinterpret_cast<std::uintptr_t>(cur_) % align) % align;
  }
  char *p = cur_ + pad;
  cur_ = p + bytes;
  left_ -= pad + bytes;
  return p;
}

std::string_view Arena::str(std::string_view s) {
  if (s.empty()) return std::string_view();
  char *p = array<char>(s.size());
  std::memcpy(p, s.data(), s.size());
  return std::string_view(p, s.size());
}

Span<Label> Arena::labels(const Labels &labels) {
  Span<Label> out{array<Label>(labels.size()), static_cast<uint32_t>(labels.size())};
  for (std::size_t i = 0; i < labels.size(); ++i)
    new (&out.data[i]) Label(str(labels[i].first), str(labels[i].second));
  return out;
}

Span<Label> Arena::labels(
    std::initializer_list<std::pair<std::string_view, std::string_view>> labels) {
  Span<Label> out{array<Label>(labels.size()), static_cast<uint32_t>(labels.size())};
  std::size_t i = 0;
  for (const auto &[k, v] : labels) new (&out.data[i++]) Label(str(k), str(v));
  return out;
}

Labels to_labels(Span<Label> labels) {
  Labels out;
  out.reserve(labels.size());
  for (const auto &[k, v] : labels) out.emplace_back(k, v);
  return out;
}

namespace {

// A copy of `labels` in `arena` sorted by name (stable), for the rare
// span that is not sorted yet.
Span<Label> sorted_copy(Span<Label> labels, Arena &arena) {
  Span<Label> out{arena.array<Label>(labels.size()), labels.count};
  for (std::size_t i = 0; i < labels.size(); ++i) new (&out.data[i]) Label(labels[i]);
  std::stable_sort(out.begin(), out.end(),
                   [](const Label &a, const Label &b) { return a.first < b.first; });
  return out;
}

bool sorted_by_name(Span<Label> labels) {
  for (std::size_t i = 1; i < labels.size(); ++i)
    if (name_less(labels[i].first, labels[i - 1].first)) return false;
  return true;
}

// Whether sorted names hold one twice.
bool repeats_name(Span<Label> labels) {
  for (std::size_t i = 1; i < labels.size(); ++i) {
    const std::string_view a = labels[i - 1].first, b = labels[i].first;
    if (a.size() == b.size() && (a.data() == b.data() || a == b)) return true;
  }
  return false;
}

}  // namespace

bool normalize_label_span(Span<Label> &labels, Arena &arena, KnownNames *known) {
  bool plain = true, empties = false;
  for (const auto &[name, value] : labels) {
    if (known == nullptr || !known->has(name)) {
      if (!is_plain_label_name(name) || name == "le" || name == "quantile") {
        plain = false;
      } else if (known != nullptr) {
        known->add(name);
      }
    }
    plain = plain && value.size() <= kMaxLabelValueBytes && is_plain_ascii(value);
    empties = empties || value.empty();
  }
  if (!plain) {
    // Some label needs the full checks: the owning rules decide.
    try {
      normalize_labels(to_labels(labels));
    } catch (const std::invalid_argument &) {
      return false;
    }
  }
  if (!sorted_by_name(labels)) labels = sorted_copy(labels, arena);
  if (repeats_name(labels)) return false;
  if (empties) {
    Span<Label> out{arena.array<Label>(labels.size()), 0};
    for (const Label &l : labels)
      if (!l.second.empty()) new (&out.data[out.count++]) Label(l);
    labels = out;
  }
  return true;
}

bool normalize_exemplar_label_span(Span<Label> &labels, Arena &arena, KnownNames *known) {
  if (labels.empty()) return false;
  bool plain = true;
  std::size_t chars = 0;
  for (const auto &[name, value] : labels) {
    if (known == nullptr || !known->has(name)) {
      if (!is_plain_label_name(name)) {
        plain = false;
      } else if (known != nullptr) {
        known->add(name);
      }
    }
    plain = plain && is_plain_ascii(value);
    chars += name.size() + value.size();
  }
  if (!plain) {
    try {
      normalize_exemplar_labels(to_labels(labels));
    } catch (const std::invalid_argument &) {
      return false;
    }
  } else if (chars > kMaxExemplarLabelChars) {
    return false;
  }
  if (!sorted_by_name(labels)) labels = sorted_copy(labels, arena);
  return !repeats_name(labels);
}

}  // namespace aj
