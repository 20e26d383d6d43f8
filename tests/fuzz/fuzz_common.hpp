// Helpers shared by the libFuzzer targets in tests/fuzz/ (built by
// tests/fuzz/run, not by CMake). Pure C++17, no PostgreSQL.
#pragma once

#include <fuzzer/FuzzedDataProvider.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <string>
#include <string_view>
#include <typeinfo>

#include "core/names.hpp"

namespace aj::fuzz {

// A double from the input: one of `special` (the edge cases a target cares
// about), a small fraction (lo..hi) / div, or any 64-bit pattern (NaN
// payloads, denormals, infinities).
template <std::size_t N>
double pick_double(FuzzedDataProvider &fdp, const double (&special)[N], int lo, int hi, int div) {
  switch (fdp.ConsumeIntegralInRange<int>(0, 2)) {
    case 0:
      return special[fdp.ConsumeIntegralInRange<std::size_t>(0, N - 1)];
    case 1:
      return static_cast<double>(fdp.ConsumeIntegralInRange<int>(lo, hi)) / div;
    default: {
      const uint64_t bits = fdp.ConsumeIntegral<uint64_t>();
      double d;
      std::memcpy(&d, &bits, sizeof d);
      return d;
    }
  }
}

// Prints and aborts: libFuzzer reports it as a crash and saves the input.
[[noreturn]] inline void die(const char *where, const std::string &why) {
  std::fprintf(stderr, "\n*** %s: %s\n", where, why.c_str());
  std::abort();
}

#define AJ_FUZZ_CHECK(cond, where, why)            \
  do {                                              \
    if (!(cond)) ::aj::fuzz::die((where), (why));   \
  } while (0)

// What an error message must look like: it starts with `path` (the argument
// or JSON path it is about) and is valid UTF-8 (it ends up in ereport).
inline void check_message(const char *where, const std::invalid_argument &e,
                          std::string_view path) {
  std::string_view what(e.what());
  if (what.substr(0, path.size()) != path) {
    die(where, "message does not start with \"" + std::string(path) + "\": " + std::string(what));
  }
  if (!is_valid_utf8(what)) die(where, "message is not valid UTF-8: " + quote_for_message(what));
}

// Runs f(); only std::invalid_argument may escape it. Returns true when f()
// returned normally. `path` is the prefix every message must start with
// (nullptr: not checked).
template <class F>
bool only_invalid_argument(const char *where, const char *path, F &&f) {
  try {
    f();
    return true;
  } catch (const std::invalid_argument &e) {
    if (path != nullptr) check_message(where, e, path);
    return false;
  } catch (const std::exception &e) {
    die(where, std::string("unexpected exception ") + typeid(e).name() + ": " + e.what());
  } catch (...) {
    die(where, "unexpected non-std exception");
  }
}

}  // namespace aj::fuzz
