// The `kind` of a journal entry, derived from its event. Pure C++17: never
// includes a PostgreSQL header.
#pragma once

#include <cstddef>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>

namespace aj {

// Longest kind, in bytes; longer ones are cut at a UTF-8 character boundary.
constexpr std::size_t kMaxKindBytes = 200;

// The event's string "type" member when it has one (`type_string` non-null);
// otherwise, for an object with exactly one key (a serde-tagged enum such as
// {"Started": {...}}), that key; otherwise "unknown". An empty result is
// "unknown" too. `key_count` is the number of keys of the event (0 when it
// is not an object), `first_key` its only key when key_count == 1.
// Input is expected to be valid UTF-8. Throws only std::bad_alloc.
std::string derive_kind(const std::string *type_string, std::size_t key_count,
                        std::string_view first_key);

// The same rule on a parsed event (tests, fuzzers).
std::string derive_kind(const nlohmann::json &event);

}  // namespace aj
