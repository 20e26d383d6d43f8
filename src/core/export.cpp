#include "core/export.hpp"

#include <cctype>
#include <cstring>
#include <stdexcept>

namespace aj {

void append_export_families(const std::vector<ExportTargetHealth> &targets,
                            std::vector<Family> &out) {
  if (targets.empty()) return;
  Family last;
  last.name = kExportLastSuccessFamily;
  last.type = MetricType::Gauge;
  last.help = "Unix time of the exporter's last successful export, by target (0 = never)";
  Family errors;
  errors.name = kExportErrorsFamily;
  errors.type = MetricType::Counter;
  errors.help = "Failed exports of the exporter since the server started, by target";
  for (const ExportTargetHealth &t : targets) {
    Series s;
    s.labels = last.store().labels({{"target", t.target}});
    s.value = t.last_success_seconds;
    last.series.push_back(s);
    s.value = static_cast<double>(t.errors);
    errors.series.push_back(std::move(s));
  }
  errors.arena = last.arena;  // the same labels
  out.push_back(std::move(last));
  out.push_back(std::move(errors));
}

namespace {

bool starts_with_nocase(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (size_t i = 0; i < prefix.size(); i++)
    if (std::tolower(static_cast<unsigned char>(s[i])) != prefix[i]) return false;
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// RFC 9110 token characters.
bool is_tchar(unsigned char c) {
  return std::isalnum(c) || (c != 0 && std::strchr("!#$%&'*+-.^_`|~", c) != nullptr);
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

void validate_otlp_endpoint(std::string_view endpoint) {
  if (endpoint.empty()) return;
  if (endpoint.size() > 2048) throw std::invalid_argument("otlp_endpoint: longer than 2048 bytes");
  size_t scheme = starts_with_nocase(endpoint, "http://")    ? 7
                  : starts_with_nocase(endpoint, "https://") ? 8
                                                             : 0;
  if (scheme == 0)
    throw std::invalid_argument("otlp_endpoint: must start with http:// or https://, got \"" +
                                std::string(endpoint.substr(0, 64)) + "\"");
  for (char c : endpoint)
    if (static_cast<unsigned char>(c) <= ' ' || c == 0x7f)
      throw std::invalid_argument("otlp_endpoint: must not contain spaces or control characters");
  if (endpoint.size() == scheme || endpoint[scheme] == '/')
    throw std::invalid_argument("otlp_endpoint: no host after the scheme");
}

std::string otlp_metrics_url(std::string_view endpoint) {
  validate_otlp_endpoint(endpoint);
  if (endpoint.empty()) throw std::invalid_argument("otlp_endpoint: is empty");
  while (!endpoint.empty() && endpoint.back() == '/') endpoint.remove_suffix(1);
  return std::string(endpoint) + "/v1/metrics";
}

std::vector<std::pair<std::string, std::string>> parse_otlp_headers(std::string_view headers) {
  std::vector<std::pair<std::string, std::string>> out;
  size_t item = 0;
  while (true) {
    size_t comma = headers.find(',');
    std::string_view raw = trim(headers.substr(0, comma));
    item++;
    if (!raw.empty()) {
      std::string where = "otlp_headers: item " + std::to_string(item);
      size_t eq = raw.find('=');
      if (eq == std::string_view::npos) throw std::invalid_argument(where + ": expected key=value");
      std::string_view key = trim(raw.substr(0, eq));
      std::string_view val = trim(raw.substr(eq + 1));
      if (key.empty()) throw std::invalid_argument(where + ": empty header name");
      for (char c : key)
        if (!is_tchar(static_cast<unsigned char>(c)))
          throw std::invalid_argument(where + ": \"" + std::string(key) +
                                      "\" is not a valid HTTP header name");
      std::string decoded;
      for (size_t i = 0; i < val.size(); i++) {
        char c = val[i];
        if (c == '%') {
          int hi = i + 2 < val.size() ? hex_digit(val[i + 1]) : -1;
          int lo = i + 2 < val.size() ? hex_digit(val[i + 2]) : -1;
          if (hi < 0 || lo < 0)
            throw std::invalid_argument(where + " (" + std::string(key) + "): bad percent escape");
          c = static_cast<char>(hi * 16 + lo);
          i += 2;
        }
        if (c == '\r' || c == '\n' || c == '\0')
          throw std::invalid_argument(where + " (" + std::string(key) +
                                      "): value contains CR, LF or NUL");
        decoded.push_back(c);
      }
      out.emplace_back(std::string(key), std::move(decoded));
    }
    if (comma == std::string_view::npos) break;
    headers.remove_prefix(comma + 1);
  }
  return out;
}

}  // namespace aj
