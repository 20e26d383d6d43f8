#include "core/kind.hpp"

#include <nlohmann/json.hpp>

namespace aj {

namespace {

// `s` cut to at most `max_bytes`, backing off to the start of the UTF-8
// character that straddles the limit.
std::string_view utf8_prefix(std::string_view s, std::size_t max_bytes) {
  if (s.size() <= max_bytes) return s;
  std::size_t cut = max_bytes;
  while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;
  return s.substr(0, cut);
}

std::string capped_or_unknown(std::string_view s) {
  if (s.empty()) return "unknown";
  return std::string(utf8_prefix(s, kMaxKindBytes));
}

}  // namespace

std::string derive_kind(const std::string *type_string, std::size_t key_count,
                        std::string_view first_key) {
  if (type_string != nullptr) return capped_or_unknown(*type_string);
  if (key_count == 1) return capped_or_unknown(first_key);
  return "unknown";
}

std::string derive_kind(const nlohmann::json &event) {
  if (!event.is_object()) return derive_kind(nullptr, 0, {});
  auto type = event.find("type");
  if (type != event.end() && type->is_string()) {
    return derive_kind(type->get_ptr<const std::string *>(), event.size(), {});
  }
  std::string_view first_key;
  if (!event.empty()) first_key = event.begin().key();
  return derive_kind(nullptr, event.size(), first_key);
}

}  // namespace aj
