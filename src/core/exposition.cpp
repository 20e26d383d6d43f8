#include "core/exposition.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstring>
#include <functional>
#include <map>
#include <stdexcept>
#include <string_view>
#include <new>
#include <unordered_set>
#include <utility>

#include "core/names.hpp"

namespace aj {

namespace {

constexpr std::size_t kPollEvery = 1000;

// Calls options.interrupted() once per kPollEvery ticks.
class Poller {
 public:
  explicit Poller(const RenderOptions &options) : fn_(options.interrupted) { check(); }
  void tick() {
    if (fn_ != nullptr && ++n_ >= kPollEvery) {
      n_ = 0;
      check();
    }
  }

 private:
  void check() const {
    if (fn_ != nullptr && fn_()) throw Cancelled();
  }
  bool (*fn_)();
  std::size_t n_ = 0;
};

// --- output -------------------------------------------------------------

// What runs for every piece written is inlined whatever the compiler's
// estimate (GCC otherwise calls an outlined part of append).
#if defined(__GNUC__)
#define AJ_INLINE inline __attribute__((always_inline))
#else
#define AJ_INLINE inline
#endif

// The text a renderer writes, in a buffer of its own: each piece is copied
// through a pointer after one inline check for room, where std::string's
// append is a call per piece (a render appends tens of pieces per series),
// and no byte is zeroed before it is written (a std::string's would be).
// The buffer comes from RenderOptions::allocate when given, so that a
// render's text can be written where the caller's result must be.
class TextOut {
 public:
  // `allocate` / `release`: as RenderOptions' (null: malloc / free).
  explicit TextOut(std::size_t estimate = 0, void *(*allocate)(std::size_t) = nullptr,
                   void (*release)(void *) = nullptr)
      : allocate_(allocate), release_(allocate != nullptr ? release : std::free) {
    if (estimate > 0) reserve(estimate);
  }
  TextOut(std::size_t estimate, const RenderOptions &options)
      : TextOut(estimate, options.allocate, options.release) {}
  TextOut(const TextOut &) = delete;
  TextOut &operator=(const TextOut &) = delete;
  ~TextOut() {
    if (buf_ != nullptr) release_(buf_);
  }

  AJ_INLINE void append(const char *p, std::size_t n) {
    if (n == 0) return;
    char *d = room(n);
    if (n > 16) {
      std::memcpy(d, p, n);
    } else {
      copy_small(d, p, n);
    }
  }
  AJ_INLINE TextOut &operator+=(std::string_view v) {
    append(v.data(), v.size());
    return *this;
  }
  AJ_INLINE TextOut &operator+=(char c) {
    *room(1) = c;
    return *this;
  }
  void clear() { n_ = 0; }
  bool empty() const { return n_ == 0; }
  std::string_view view() const { return std::string_view(buf_, n_); }
  // The text as a std::string (a copy) / in its own buffer (no copy).
  std::string finish() {
    std::string s(view());
    n_ = 0;
    return s;
  }
  RenderedText finish_text() {
    if (buf_ == nullptr) reserve(0);
    buf_[n_] = '\0';
    RenderedText t;
    t.bytes = std::unique_ptr<char, void (*)(void *)>(buf_, release_);
    t.size = n_;
    buf_ = nullptr;
    cap_ = n_ = 0;
    return t;
  }

 private:
  // 1..16 bytes without a call (most pieces are names, short values and
  // punctuation): two overlapping fixed-size copies, which compile inline.
  AJ_INLINE static void copy_small(char *d, const char *p, std::size_t n) {
    if (n >= 8) {
      uint64_t a, b;
      std::memcpy(&a, p, 8);
      std::memcpy(&b, p + n - 8, 8);
      std::memcpy(d, &a, 8);
      std::memcpy(d + n - 8, &b, 8);
    } else if (n >= 4) {
      uint32_t a, b;
      std::memcpy(&a, p, 4);
      std::memcpy(&b, p + n - 4, 4);
      std::memcpy(d, &a, 4);
      std::memcpy(d + n - 4, &b, 4);
    } else {
      d[0] = p[0];
      if (n > 1) d[1] = p[1];
      if (n > 2) d[2] = p[2];
    }
  }
  AJ_INLINE char *room(std::size_t n) {
    if (cap_ - n_ < n) reserve(std::max(n_ + n, 2 * cap_));
    char *p = buf_ + n_;
    n_ += n;
    return p;
  }
  // Room for `cap` bytes and a NUL (finish_text's), never zero-filled: the
  // estimate of a render is close to its size, so most renders allocate once.
  void reserve(std::size_t cap) {
    cap = std::max<std::size_t>(cap, 256);
    char *p;
    if (allocate_ == nullptr) {
      p = static_cast<char *>(std::realloc(buf_, cap + 1));
    } else {
      p = static_cast<char *>(allocate_(cap + 1));
      if (p != nullptr && buf_ != nullptr) {
        std::memcpy(p, buf_, n_);
        release_(buf_);
      }
    }
    if (p == nullptr) throw std::bad_alloc();
    buf_ = p;
    cap_ = cap;
  }
  void *(*allocate_)(std::size_t);
  void (*release_)(void *);
  char *buf_ = nullptr;  // cap_ + 1 bytes; the first n_ written
  std::size_t cap_ = 0, n_ = 0;
};

// --- numbers ------------------------------------------------------------

constexpr std::size_t kDoubleBuf = 48;

// Writes non-integral `v`, 1e-4 <= |v| < 1e6, without exponent when its
// shortest round-trip form has at most 15 significant digits (1.5, 0.25,
// 1234.125: most values a render meets); returns 0, writing nothing, for
// the others. std::to_chars is exact for all, but several times slower.
//
// Why the result is that shortest form: it looks for an integer m < 1e15
// and k > 0 with m / 10^k reading back as |v| (the division of two exact
// doubles rounds once, as strtod does). Two different decimals of at most
// 15 significant digits never read as the same double (DBL_DIG is 15), so
// such an m / 10^k is the only decimal of that length or shorter that
// reads as v: the shortest round trip, whichever k found it.
std::size_t write_short_decimal(char *buf, double v) {
  const double a = std::fabs(v);
  double p = 10;  // 10^k, exact as a double for every k below
  for (int k = 1; k <= 19; ++k, p *= 10) {
    const double m = std::round(a * p);
    if (m >= 1e15) return 0;
    if (m / p != a) continue;
    uint64_t digits = static_cast<uint64_t>(m);
    int frac = k;
    while (digits % 10 == 0) {  // never down to frac 0: v is not integral
      digits /= 10;
      --frac;
    }
    char tmp[24];
    const int nd = static_cast<int>(std::to_chars(tmp, tmp + sizeof tmp, digits).ptr - tmp);
    std::size_t n = 0;
    if (v < 0) buf[n++] = '-';
    if (nd > frac) {
      for (int i = 0; i < nd - frac; ++i) buf[n++] = tmp[i];
      buf[n++] = '.';
      for (int i = nd - frac; i < nd; ++i) buf[n++] = tmp[i];
    } else {
      buf[n++] = '0';
      buf[n++] = '.';
      for (int i = nd; i < frac; ++i) buf[n++] = '0';
      for (int i = 0; i < nd; ++i) buf[n++] = tmp[i];
    }
    return n;
  }
  return 0;
}

// Writes `v` as Go's strconv.FormatFloat(v, 'g', -1, 64) does; returns the
// length. `buf` holds at least kDoubleBuf bytes.
//
// Go writes the shortest digits that round-trip (what std::to_chars
// computes), without exponent when the decimal exponent is in [-4, 6),
// else as d[.ddd]e(+|-)dd (std::to_chars' scientific form, byte for byte).
// That exponent is in [-4, 6) exactly when 1e-4 <= |v| < 1e6: 1e6 is a
// double, so no shortest form of a smaller value reaches it, and 0.0001
// reads as the double 1e-4 (just above it), so every value at or above
// that double prints as 0.0001 or more and every value below it as less.
std::size_t write_double(char *buf, double v) {
  auto copy = [buf](std::string_view s) {
    std::copy(s.begin(), s.end(), buf);
    return s.size();
  };
  if (std::isnan(v)) return copy("NaN");
  if (std::isinf(v)) return copy(v > 0 ? "+Inf" : "-Inf");
  const double a = std::fabs(v);
  if (a < 1e6 && v == std::trunc(v)) {
    // Integral (counts, most counter values): the integer's digits, with
    // the sign of a negative zero kept.
    if (v == 0) return copy(std::signbit(v) ? "-0" : "0");
    return static_cast<std::size_t>(
        std::to_chars(buf, buf + kDoubleBuf, static_cast<int64_t>(v)).ptr - buf);
  }
  if (a >= 1e-4 && a < 1e6) {
    if (std::size_t n = write_short_decimal(buf, v); n > 0) return n;
    return static_cast<std::size_t>(
        std::to_chars(buf, buf + kDoubleBuf, v, std::chars_format::fixed).ptr - buf);
  }
  return static_cast<std::size_t>(
      std::to_chars(buf, buf + kDoubleBuf, v, std::chars_format::scientific).ptr - buf);
}

void append_double(TextOut &out, double v) {
  char buf[kDoubleBuf];
  out.append(buf, write_double(buf, v));
}

// OpenMetrics: as client_golang writes floats, ".0" after integral values.
void append_double_openmetrics(TextOut &out, double v) {
  char buf[kDoubleBuf];
  const std::size_t n = write_double(buf, v);
  out.append(buf, n);
  if (!std::isfinite(v)) return;
  for (std::size_t i = 0; i < n; ++i) {
    if (buf[i] == '.' || buf[i] == 'e') return;
  }
  out += ".0";
}

void append_uint(TextOut &out, uint64_t v) {
  char buf[24];
  out.append(buf, static_cast<std::size_t>(std::to_chars(buf, buf + sizeof buf, v).ptr - buf));
}

// --- escaping -----------------------------------------------------------

// True when a byte of the word `w` is `c` (the exact zero-byte test of
// w ^ c...c).
bool has_byte(uint64_t w, unsigned char c) {
  constexpr uint64_t kOnes = 0x0101010101010101ULL, kHigh = 0x8080808080808080ULL;
  const uint64_t x = w ^ (kOnes * c);
  return ((x - kOnes) & ~x & kHigh) != 0;
}

// The bytes append_escaped replaces: bit 1 in both kinds of text (\ and
// newline), bit 2 only in quoted ones (").
struct EscapeTable {
  unsigned char c[256] = {};
  constexpr EscapeTable() {
    c[static_cast<unsigned char>('\\')] = 1;
    c[static_cast<unsigned char>('\n')] = 1;
    c[static_cast<unsigned char>('"')] = 2;
  }
};
constexpr EscapeTable kEscapes;

void append_escaped(TextOut &out, std::string_view s, bool quote) {
  // Most strings need no escape: skip eight bytes at a time up to the
  // first word holding a \, newline or (quote) '"'.
  std::size_t i = 0;
  for (; i + 8 <= s.size(); i += 8) {
    uint64_t w;
    std::memcpy(&w, s.data() + i, 8);
    if (has_byte(w, '\\') || has_byte(w, '\n') || (quote && has_byte(w, '"'))) break;
  }
  const unsigned char mask = quote ? 3 : 1;
  for (; i < s.size(); ++i) {
    if ((kEscapes.c[static_cast<unsigned char>(s[i])] & mask) != 0) break;
  }
  if (i == s.size()) {  // nothing to escape: one copy
    out.append(s.data(), s.size());
    return;
  }
  std::size_t start = 0;
  for (; i < s.size(); ++i) {
    const char c = s[i];
    if ((kEscapes.c[static_cast<unsigned char>(c)] & mask) == 0) continue;
    const char *rep = c == '\\'             ? "\\\\"
                      : c == '\n'           ? "\\n"
                      : (quote && c == '"') ? "\\\""
                                            : nullptr;
    if (rep == nullptr) continue;
    out += s.substr(start, i - start);
    out += rep;
    start = i + 1;
  }
  out += s.substr(start);
}

void append_json_string(TextOut &out, std::string_view s) {
  out += '"';
  std::size_t start = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    out += s.substr(start, i - start);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default: {
        static const char hex[] = "0123456789abcdef";
        out += "\\u00";
        out += hex[c >> 4];
        out += hex[c & 0xF];
      }
    }
    start = i + 1;
  }
  out += s.substr(start);
  out += '"';
}

void append_json_double(TextOut &out, double v) {
  if (std::isnan(v)) {
    out += "\"NaN\"";
  } else if (std::isinf(v)) {
    out += v > 0 ? "\"Infinity\"" : "\"-Infinity\"";
  } else {
    append_double(out, v);  // Go 'g' output is a valid JSON number
  }
}

// --- prepare ------------------------------------------------------------

bool valid_bounds(const std::vector<double> &bounds) {
  for (std::size_t i = 0; i < bounds.size(); ++i) {
    if (!std::isfinite(bounds[i])) return false;
    if (i > 0 && !(bounds[i] > bounds[i - 1])) return false;
  }
  return true;
}

bool valid_name(const Family &f) {
  try {
    validate_metric_name(f.name, f.type);
    return true;
  } catch (const std::invalid_argument &) {
    return false;
  }
}

// Normalizes the labels and checks the values; false when the series must
// be dropped as invalid. What changes is written anew to `arena`.
bool prepare_series(const Family &f, Series &s, Arena &arena, KnownNames known[2]) {
  if (!normalize_label_span(s.labels, arena, &known[0])) return false;
  // Exemplars that do not fit are left out; the series stays.
  if (!s.exemplars.empty()) {
    const std::size_t buckets = f.type == MetricType::Histogram ? f.bounds.size() + 1
                                : f.type == MetricType::Counter ? 1 : 0;
    // The first valid one of each bucket wins. The span is rewritten only
    // when one is left out, normalized anew or out of bucket order (most
    // series have one valid exemplar whose labels the loader sorted).
    bool same = true;
    std::size_t kept = 0;
    Exemplar *out = nullptr;
    for (std::size_t i = 0; i < s.exemplars.size(); ++i) {
      Exemplar e = s.exemplars[i];
      bool ok = e.bucket < buckets && std::isfinite(e.value) && std::isfinite(e.timestamp);
      for (std::size_t k = 0; ok && k < kept; ++k) {
        ok = (out != nullptr ? out[k] : s.exemplars[k]).bucket != e.bucket;
      }
      const Span<Label> before = e.labels;
      ok = ok && normalize_exemplar_label_span(e.labels, arena, &known[1]);
      if (same && (!ok || e.labels.data != before.data || e.labels.count != before.count)) {
        same = false;
        out = arena.array<Exemplar>(s.exemplars.size());
        for (std::size_t k = 0; k < kept; ++k) new (&out[k]) Exemplar(s.exemplars[k]);
      }
      if (!ok) continue;
      if (!same) new (&out[kept]) Exemplar(e);
      ++kept;
    }
    if (!same) s.exemplars = Span<Exemplar>{out, static_cast<uint32_t>(kept)};
    // Buckets are unique now, so any sort gives the one order.
    const auto by_bucket = [](const Exemplar &a, const Exemplar &b) { return a.bucket < b.bucket; };
    if (!std::is_sorted(s.exemplars.begin(), s.exemplars.end(), by_bucket)) {
      if (same) {
        out = arena.array<Exemplar>(s.exemplars.size());
        for (std::size_t k = 0; k < s.exemplars.size(); ++k) new (&out[k]) Exemplar(s.exemplars[k]);
        s.exemplars.data = out;
      }
      std::sort(s.exemplars.begin(), s.exemplars.end(), by_bucket);
    }
  }
  switch (f.type) {
    case MetricType::Counter:
      return !std::isnan(s.value) && s.value >= 0;
    case MetricType::Gauge:
      return true;
    case MetricType::Histogram: {
      if (s.bucket_counts.size() != f.bounds.size() + 1) return false;
      uint64_t total = 0;
      for (uint64_t c : s.bucket_counts) {
        if (c > UINT64_MAX - total) return false;
        total += c;
      }
      return total == s.count;
    }
  }
  return false;
}

// The 8 bytes at `p` as a big-endian number: comparing two of them
// compares the bytes as memcmp does.
uint64_t load_be64(const char *p) {
#if defined(__GNUC__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  uint64_t v;
  std::memcpy(&v, p, 8);
  return __builtin_bswap64(v);  // one load and one instruction
#else
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
#endif
}

// The prepared series of one family (labels normalized) sorted by labels,
// lexicographic over the (name, value) pairs, stable; a series whose labels
// equal an earlier one's counted in d.duplicate and left out, those past
// `max_series` (0 = no limit) in d.cardinality.
std::vector<Series> sort_series(std::vector<Series> series, std::size_t max_series, Dropped &d) {
  // One flat key per series ("n1\0v1\0n2\0v2\0": names and values hold no
  // NUL, so comparing keys compares the label lists pair by pair), all in
  // one buffer, and a permutation sorted instead of the Series objects:
  // one move per series.
  std::string keys;
  std::size_t total = 0;
  for (const Series &s : series) {
    for (const auto &[name, value] : s.labels) total += name.size() + value.size() + 2;
  }
  keys.resize(total);
  // 16 bytes, what the sort moves; where a key starts is in `offsets`
  struct Key {
    uint64_t head;  // for the sort, below
    uint32_t index, length;
  };
  std::vector<Key> order;
  order.reserve(series.size());
  std::vector<std::size_t> offsets(series.size());
  char *p = keys.data();  // keys is sized to fit: written with copies and no checks
  for (std::size_t i = 0; i < series.size(); ++i) {
    char *const start = p;
    for (const auto &[name, value] : series[i].labels) {
      p = std::copy(name.begin(), name.end(), p);
      *p++ = '\0';
      p = std::copy(value.begin(), value.end(), p);
      *p++ = '\0';
    }
    offsets[i] = static_cast<std::size_t>(start - keys.data());
    order.push_back(Key{0, static_cast<uint32_t>(i), static_cast<uint32_t>(p - start)});
  }
  const auto view = [&keys, &offsets](const Key &k) {
    return std::string_view(keys.data() + offsets[k.index], k.length);
  };
  // Sorted eight bytes at a time (most comparisons are then of two
  // integers in one array, not of strings in a buffer far away): by the
  // 8 bytes at `depth` as a big-endian `head`, then the index; each run of
  // equal heads, then by the next 8 bytes, and so on while its keys go on.
  // Past its end a key is padded with zeros, which sort before what a
  // longer key has there (the first byte of a label name, never NUL), as
  // the shorter key does; keys equal to the end stay in index order (the
  // first one wins). A run keeps the index order of the level before, so a
  // run already in order (an input in order, a run whose next bytes are all
  // equal) costs one pass.
  const auto by_head = [](const Key &a, const Key &b) {
    return a.head != b.head ? a.head < b.head : a.index < b.index;
  };
  struct Run {
    std::size_t begin, end, depth;
  };
  std::vector<Run> runs;
  if (order.size() > 1) runs.push_back(Run{0, order.size(), 0});
  while (!runs.empty()) {
    const Run run = runs.back();
    runs.pop_back();
    const auto first = order.begin() + static_cast<std::ptrdiff_t>(run.begin);
    const auto last = order.begin() + static_cast<std::ptrdiff_t>(run.end);
    for (auto k = first; k != last; ++k) {
      if (k->length >= run.depth + 8) {
        k->head = load_be64(keys.data() + offsets[k->index] + run.depth);
        continue;
      }
      char head[8] = {};
      if (k->length > run.depth) {
        const std::string_view rest = view(*k).substr(run.depth, sizeof head);
        std::copy(rest.begin(), rest.end(), head);
      }
      k->head = load_be64(head);
    }
    if (!std::is_sorted(first, last, by_head)) std::sort(first, last, by_head);
    const std::size_t next = run.depth + 8;
    for (std::size_t i = run.begin; i < run.end;) {
      std::size_t j = i + 1;
      bool goes_on = order[i].length > next;
      for (; j < run.end && order[j].head == order[i].head; ++j) {
        goes_on = goes_on || order[j].length > next;
      }
      if (j - i > 1 && goes_on) runs.push_back(Run{i, j, next});
      i = j;
    }
  }
  std::vector<Series> sorted;
  sorted.reserve(max_series > 0 ? std::min(max_series, series.size()) : series.size());
  for (std::size_t i = 0; i < order.size(); ++i) {
    if (i > 0 && view(order[i]) == view(order[i - 1])) {
      ++d.duplicate;
    } else if (max_series > 0 && sorted.size() >= max_series) {
      ++d.cardinality;  // counted after duplicates: only distinct series count
    } else {
      sorted.push_back(std::move(series[order[i].index]));
    }
  }
  return sorted;
}

Family dropped_family(const Dropped &d) {
  Family f;
  f.name = kDroppedFamilyName;
  f.type = MetricType::Gauge;
  f.help = "Series left out of this render, by reason";
  auto add = [&f](const char *reason, uint64_t n) {
    Series s;
    s.labels = f.store().labels({{"reason", reason}});
    s.value = static_cast<double>(n);
    f.series.push_back(std::move(s));
  };
  add("cardinality", d.cardinality);
  add("duplicate", d.duplicate);
  add("invalid", d.invalid);
  return f;
}

// --- text formats -------------------------------------------------------

enum class TextFormat { Prometheus, OpenMetrics };

std::size_t labels_bytes(Span<Label> labels) {
  std::size_t n = 2;
  for (const auto &[k, v] : labels) n += k.size() + v.size() + 4;
  return n;
}

// Close to the final size: values are guessed at kValueGuess bytes.
std::size_t estimate_text_size(const std::vector<Family> &families) {
  constexpr std::size_t kValueGuess = 12;
  std::size_t total = 16;
  for (const Family &f : families) {
    total += 2 * f.name.size() + f.help.size() + f.help.size() / 8 + 40;
    // per bucket: "_bucket", ",le=\"\"" and the bound
    const std::size_t bucket_extra = 7 + 6 + 8;
    for (const Series &s : f.series) {
      const std::size_t line = f.name.size() + labels_bytes(s.labels) + 2 + kValueGuess;
      if (f.type == MetricType::Histogram) {
        total += (f.bounds.size() + 1) * (line + bucket_extra) + 2 * (line + 6);
      } else {
        total += line;
      }
      // OpenMetrics: a _created line, and exemplars (" # {labels} value time")
      if (s.created > 0) total += line + 16;
      for (const Exemplar &e : s.exemplars) total += labels_bytes(e.labels) + 2 * kValueGuess + 24;
    }
  }
  return total;
}

// `k="v",...` (values escaped), for a sample's and an exemplar's label set.
void append_label_pairs(TextOut &out, Span<Label> labels) {
  bool first = true;
  for (const auto &[k, v] : labels) {
    if (!first) out += ',';
    first = false;
    out += k;
    out += "=\"";
    append_escaped(out, v, true);
    out += '"';
  }
}

// A series' label set as the text formats write it after a sample name,
// built once per series and reused by each of its lines (value, _created,
// every bucket, _sum, _count): `plain` is `{k="v",...} ` (just " " without
// labels), `le_head` (histograms only) `{k="v",...,le="` (`{le="` without
// labels), which a bucket line completes with the bound and `"} `.
struct SeriesLabels {
  TextOut plain, le_head;

  void build(Span<Label> labels, bool histogram) {
    plain.clear();
    if (!labels.empty()) {
      plain += '{';
      append_label_pairs(plain, labels);
    }
    if (histogram) {
      le_head.clear();
      le_head += plain.view();
      le_head += labels.empty() ? "{le=\"" : ",le=\"";
    }
    plain += labels.empty() ? " " : "} ";
  }
};

// `name suffix {labels} ` (braces only when there are labels).
void append_sample_head(TextOut &out, std::string_view name, std::string_view suffix,
                        const SeriesLabels &labels) {
  out += name;
  out += suffix;
  out += labels.plain.view();
}

// `name_bucket{labels,le="bound"} `.
void append_bucket_head(TextOut &out, std::string_view name, const SeriesLabels &labels,
                        const std::string &le) {
  out += name;
  out += "_bucket";
  out += labels.le_head.view();
  out += le;
  out += "\"} ";
}

// A series' `_created` (Unix epoch seconds): microseconds kept, trailing
// zeros dropped (the shortest %g form would round to 10 ms).
void append_created(TextOut &out, double created) {
  // Integer arithmetic (snprintf's %f costs a multi-precision division per
  // call, once per series of a render).
  if (!(created >= 0 && created < 9e12)) return append_double_openmetrics(out, created);
  const int64_t us = static_cast<int64_t>(std::llround(created * 1e6));
  char buf[40];
  char *end = std::to_chars(buf, buf + 24, us / 1000000).ptr;
  int64_t frac = us % 1000000;
  if (frac != 0) {
    *end++ = '.';
    char digits[6];
    for (int i = 5; i >= 0; --i, frac /= 10) digits[i] = static_cast<char>('0' + frac % 10);
    int n = 6;
    while (n > 0 && digits[n - 1] == '0') --n;
    for (int i = 0; i < n; ++i) *end++ = digits[i];
  }
  out.append(buf, static_cast<std::size_t>(end - buf));
}

// ` # {labels} value timestamp` after an OpenMetrics sample, for the
// series' exemplar of `bucket` if it has one.
void append_exemplar(TextOut &out, const Series &s, std::size_t bucket) {
  for (const Exemplar &e : s.exemplars) {
    if (e.bucket != bucket) continue;
    out += " # {";
    append_label_pairs(out, e.labels);
    out += "} ";
    append_double_openmetrics(out, e.value);
    out += ' ';
    append_created(out, e.timestamp);
    return;
  }
}

std::string_view without_total(const std::string &name) {
  std::string_view n(name);
  constexpr std::string_view kTotal = "_total";
  if (n.size() > kTotal.size() && n.substr(n.size() - kTotal.size()) == kTotal) {
    n.remove_suffix(kTotal.size());
  }
  return n;
}

RenderedText render_text(std::vector<Family> families, const RenderOptions &options,
                         Dropped *dropped, TextFormat format) {
  Poller poll(options);
  Dropped d = prepare_families(families, options);
  if (dropped != nullptr) *dropped = d;
  const bool om = format == TextFormat::OpenMetrics;
  auto append_value = om ? append_double_openmetrics : append_double;

  TextOut out(estimate_text_size(families), options);
  for (const Family &f : families) {
    const std::string_view meta_name =
        om && f.type == MetricType::Counter ? without_total(f.name) : std::string_view(f.name);
    out += "# HELP ";
    out += meta_name;
    out += ' ';
    append_escaped(out, f.help, om);
    out += "\n# TYPE ";
    out += meta_name;
    out += ' ';
    out += type_name(f.type);
    out += '\n';

    std::vector<std::string> le;
    bool negative_bound = false;
    if (f.type == MetricType::Histogram) {
      le.reserve(f.bounds.size() + 1);
      for (double b : f.bounds) {
        TextOut s;
        if (om) {
          append_double_openmetrics(s, b);
        } else {
          append_double(s, b);
        }
        le.push_back(s.finish());
        negative_bound = negative_bound || b < 0;
      }
      le.push_back("+Inf");
    }

    const std::string_view created_name =
        f.type == MetricType::Counter ? without_total(f.name) : std::string_view(f.name);
    SeriesLabels labels;  // reused: its buffers grow once per family, not per series
    for (const Series &s : f.series) {
      poll.tick();
      labels.build(s.labels, f.type == MetricType::Histogram);
      if (f.type != MetricType::Histogram) {
        append_sample_head(out, f.name, "", labels);
        append_value(out, s.value);
        if (om && f.type == MetricType::Counter && !s.exemplars.empty()) append_exemplar(out, s, 0);
        out += '\n';
        if (om && f.type == MetricType::Counter && s.created > 0) {
          append_sample_head(out, created_name, "_created", labels);
          append_created(out, s.created);
          out += '\n';
        }
        continue;
      }
      uint64_t cumulative = 0;
      for (std::size_t i = 0; i < le.size(); ++i) {
        cumulative += s.bucket_counts[i];
        append_bucket_head(out, f.name, labels, le[i]);
        append_uint(out, cumulative);
        if (om && !s.exemplars.empty()) append_exemplar(out, s, i);
        out += '\n';
      }
      // OpenMetrics: _sum is a counter (no NaN, not negative) and is not
      // allowed with negative buckets; _count goes with it.
      if (om && (negative_bound || std::isnan(s.sum) || s.sum < 0)) continue;
      append_sample_head(out, f.name, "_sum", labels);
      append_value(out, s.sum);
      out += '\n';
      append_sample_head(out, f.name, "_count", labels);
      append_uint(out, s.count);
      out += '\n';
      if (om && s.created > 0) {
        append_sample_head(out, created_name, "_created", labels);
        append_created(out, s.created);
        out += '\n';
      }
    }
  }
  if (om) out += "# EOF\n";
  return out.finish_text();
}

// --- OTLP JSON ----------------------------------------------------------

const std::string_view *service_of(const Series &s) {
  for (const auto &[k, v] : s.labels) {
    if (k == "service") return &v;
  }
  return nullptr;
}

void append_attributes(TextOut &out, Span<Label> labels) {
  out += "\"attributes\":[";
  bool first = true;
  for (const auto &[k, v] : labels) {
    if (k == "service") continue;
    if (!first) out += ',';
    first = false;
    out += "{\"key\":";
    append_json_string(out, k);
    out += ",\"value\":{\"stringValue\":";
    append_json_string(out, v);
    out += "}}";
  }
  out += ']';
}

// A label that OTLP carries in its own field: trace_id (32 hex digits) or
// span_id (16), not all zero.
bool otlp_id(std::string_view v, std::size_t len) {
  if (v.size() != len) return false;
  bool nonzero = false;
  for (char c : v) {
    bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
    if (!hex) return false;
    nonzero = nonzero || c != '0';
  }
  return nonzero;
}

// Whether Unix epoch seconds fit OTLP's fixed64 nanoseconds (after 1970,
// before 2262).
bool fits_unix_nano(double seconds) { return seconds > 0 && seconds < 9.2e9; }

// Unix epoch seconds (fits_unix_nano) as nanoseconds in a JSON string.
void append_unix_nano(TextOut &out, double seconds) {
  out += '"';
  char buf[24];
  const int64_t ns = static_cast<int64_t>(std::llround(seconds * 1e6)) * 1000;
  out.append(buf, static_cast<std::size_t>(std::to_chars(buf, buf + sizeof buf, ns).ptr - buf));
  out += '"';
}

// `,"exemplars":[...]`: trace_id and span_id go to traceId / spanId (as
// hex, OTLP/JSON's encoding), the other labels to filteredAttributes.
void append_otlp_exemplars(TextOut &out, Span<Exemplar> exemplars) {
  out += ",\"exemplars\":[";
  bool first = true;
  for (const Exemplar &e : exemplars) {
    if (!first) out += ',';
    first = false;
    out += "{\"filteredAttributes\":[";
    std::string trace, span;
    bool first_attr = true;
    for (const auto &[k, v] : e.labels) {
      std::string lower;
      if (k == "trace_id" && otlp_id(v, 32)) {
        for (char c : v) trace += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        continue;
      }
      if (k == "span_id" && otlp_id(v, 16)) {
        for (char c : v) span += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        continue;
      }
      if (!first_attr) out += ',';
      first_attr = false;
      out += "{\"key\":";
      append_json_string(out, k);
      out += ",\"value\":{\"stringValue\":";
      append_json_string(out, v);
      out += "}}";
    }
    out += ']';
    if (fits_unix_nano(e.timestamp)) {
      out += ",\"timeUnixNano\":";
      append_unix_nano(out, e.timestamp);
    }
    out += ",\"asDouble\":";
    append_json_double(out, e.value);
    if (!span.empty()) {
      out += ",\"spanId\":";
      append_json_string(out, span);
    }
    if (!trace.empty()) {
      out += ",\"traceId\":";
      append_json_string(out, trace);
    }
    out += '}';
  }
  out += ']';
}

}  // namespace

// --- public -------------------------------------------------------------

std::string format_double(double v) {
  char buf[kDoubleBuf];
  return std::string(buf, write_double(buf, v));
}

std::string escape_label_value(std::string_view s) {
  TextOut out(s.size());
  append_escaped(out, s, true);
  return out.finish();
}

std::string escape_help(std::string_view s) {
  TextOut out(s.size());
  append_escaped(out, s, false);
  return out.finish();
}

std::string escape_help_openmetrics(std::string_view s) { return escape_label_value(s); }

Dropped prepare_families(std::vector<Family> &families, const RenderOptions &options) {
  Poller poll(options);
  Dropped d;
  std::stable_sort(families.begin(), families.end(),
                   [](const Family &a, const Family &b) { return a.name < b.name; });

  std::unordered_set<std::string> claimed;
  for (auto &n : occupied_names(kDroppedFamilyName, MetricType::Gauge)) claimed.insert(n);

  std::vector<Family> kept;
  kept.reserve(families.size() + 1);
  KnownNames known[2];  // series label names, exemplar label names that passed
  for (Family &f : families) {
    if (!valid_name(f) || (f.type == MetricType::Histogram && !valid_bounds(f.bounds))) {
      d.invalid += f.series.size();
      continue;
    }
    const std::vector<std::string> names = occupied_names(f.name, f.type);
    if (std::any_of(names.begin(), names.end(),
                    [&claimed](const std::string &n) { return claimed.count(n) > 0; })) {
      d.duplicate += f.series.size();
      continue;
    }

    // The valid series move to the front of f.series, in order.
    std::size_t valid = 0;
    for (Series &s : f.series) {
      poll.tick();
      if (!prepare_series(f, s, f.store(), known)) {
        ++d.invalid;
        continue;
      }
      if (&s != &f.series[valid]) f.series[valid] = std::move(s);
      ++valid;
    }
    f.series.erase(f.series.begin() + static_cast<std::ptrdiff_t>(valid), f.series.end());
    f.series = sort_series(std::move(f.series), options.max_series_per_family, d);
    if (f.series.empty()) continue;

    if (f.help.empty() || !is_valid_utf8(f.help) || f.help.find('\0') != std::string::npos) {
      f.help = f.name + " (no help given)";
    }
    for (auto &n : names) claimed.insert(std::move(n));
    kept.push_back(std::move(f));
  }
  kept.push_back(dropped_family(d));
  families = std::move(kept);
  return d;
}

RenderedText render_prometheus_buffer(std::vector<Family> families, const RenderOptions &options,
                                      Dropped *dropped) {
  return render_text(std::move(families), options, dropped, TextFormat::Prometheus);
}

RenderedText render_openmetrics_buffer(std::vector<Family> families, const RenderOptions &options,
                                       Dropped *dropped) {
  return render_text(std::move(families), options, dropped, TextFormat::OpenMetrics);
}

std::string render_prometheus(std::vector<Family> families, const RenderOptions &options,
                              Dropped *dropped) {
  return std::string(render_prometheus_buffer(std::move(families), options, dropped).view());
}

std::string render_openmetrics(std::vector<Family> families, const RenderOptions &options,
                               Dropped *dropped) {
  return std::string(render_openmetrics_buffer(std::move(families), options, dropped).view());
}

std::string render_otlp_json(std::vector<Family> families, const std::string *only_service,
                             int64_t time_unix_nano, const RenderOptions &options,
                             Dropped *dropped) {
  return std::string(
      render_otlp_json_buffer(std::move(families), only_service, time_unix_nano, options, dropped)
          .view());
}

RenderedText render_otlp_json_buffer(std::vector<Family> families, const std::string *only_service,
                                     int64_t time_unix_nano, const RenderOptions &options,
                                     Dropped *dropped) {
  Poller poll(options);
  Dropped d = prepare_families(families, options);
  if (dropped != nullptr) *dropped = d;

  // service.name -> (family index, series indexes), in family order.
  struct Entry {
    std::size_t family;
    std::vector<std::size_t> series;
  };
  std::map<std::string, std::vector<Entry>, std::less<>> resources;
  std::size_t total_series = 0;
  for (std::size_t fi = 0; fi < families.size(); ++fi) {
    const Family &f = families[fi];
    for (std::size_t si = 0; si < f.series.size(); ++si) {
      poll.tick();
      const std::string_view *svc = service_of(f.series[si]);
      std::string_view service = svc != nullptr ? std::string_view(*svc) : kOtlpDefaultService;
      if (only_service != nullptr && service != *only_service) continue;
      auto it = resources.find(service);
      if (it == resources.end())
        it = resources.emplace(std::string(service), std::vector<Entry>()).first;
      if (it->second.empty() || it->second.back().family != fi) it->second.push_back({fi, {}});
      it->second.back().series.push_back(si);
      ++total_series;
    }
  }

  TextOut t;
  append_json_string(t, std::to_string(time_unix_nano));

  TextOut out(256 + total_series * 160, options);
  out += "{\"resourceMetrics\":[";
  bool first_resource = true;
  for (const auto &[service, entries] : resources) {
    if (!first_resource) out += ',';
    first_resource = false;
    out += "{\"resource\":{\"attributes\":[{\"key\":\"service.name\",\"value\":{\"stringValue\":";
    append_json_string(out, service);
    out += "}}";
    if (!options.service_namespace.empty()) {
      out += ",{\"key\":\"service.namespace\",\"value\":{\"stringValue\":";
      append_json_string(out, options.service_namespace);
      out += "}}";
    }
    out += "]},\"scopeMetrics\":[{\"scope\":{\"name\":";
    append_json_string(out, kOtlpScopeName);
    out += ",\"version\":";
    append_json_string(out, options.scope_version.empty() ? std::string_view(kOtlpScopeVersion)
                                                          : std::string_view(options.scope_version));
    out += "},\"metrics\":[";
    bool first_metric = true;
    for (const Entry &e : entries) {
      const Family &f = families[e.family];
      if (!first_metric) out += ',';
      first_metric = false;
      out += "{\"name\":";
      append_json_string(
          out, f.type == MetricType::Counter ? without_total(f.name) : std::string_view(f.name));
      out += ",\"description\":";
      append_json_string(out, f.help);
      switch (f.type) {
        case MetricType::Counter:
          out += ",\"sum\":{\"aggregationTemporality\":2,\"isMonotonic\":true,\"dataPoints\":[";
          break;
        case MetricType::Gauge:
          out += ",\"gauge\":{\"dataPoints\":[";
          break;
        case MetricType::Histogram:
          out += ",\"histogram\":{\"aggregationTemporality\":2,\"dataPoints\":[";
          break;
      }
      bool first_point = true;
      for (std::size_t si : e.series) {
        poll.tick();
        const Series &s = f.series[si];
        if (!first_point) out += ',';
        first_point = false;
        out += '{';
        append_attributes(out, s.labels);
        if (f.type != MetricType::Gauge && fits_unix_nano(s.created)) {
          out += ",\"startTimeUnixNano\":";
          append_unix_nano(out, s.created);
        }
        out += ",\"timeUnixNano\":";
        out += t.view();
        if (f.type != MetricType::Histogram) {
          out += ",\"asDouble\":";
          append_json_double(out, s.value);
        } else {
          out += ",\"count\":\"";
          append_uint(out, s.count);
          out += "\",\"sum\":";
          append_json_double(out, s.sum);
          out += ",\"bucketCounts\":[";
          for (std::size_t i = 0; i < s.bucket_counts.size(); ++i) {
            if (i > 0) out += ',';
            out += '"';
            append_uint(out, s.bucket_counts[i]);
            out += '"';
          }
          out += "],\"explicitBounds\":[";
          for (std::size_t i = 0; i < f.bounds.size(); ++i) {
            if (i > 0) out += ',';
            append_json_double(out, f.bounds[i]);
          }
          out += ']';
        }
        if (!s.exemplars.empty()) append_otlp_exemplars(out, s.exemplars);
        out += '}';
      }
      out += "]}}";
    }
    out += "]}]}";
  }
  out += "]}";
  return out.finish_text();
}

}  // namespace aj
