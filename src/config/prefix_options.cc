#include "bantam/prefix_options.h"

#include <charconv>

namespace bantam {
namespace {

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// A decimal number in [lo, hi], nothing else.
bool ParseInRange(std::string_view s, int lo, int hi, int* out) {
  s = Trim(s);
  int v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size() || v < lo || v > hi) {
    return false;
  }
  *out = v;
  return true;
}

}  // namespace

Status SetPrefixOption(PrefixOptions* o, std::string_view name, std::string_view value) {
  const std::string shown = std::string(name) + " = " + std::string(Trim(value));
  if (name == "prefix4" || name == "prefix6") {
    const int width = name == "prefix4" ? 32 : 128;
    int* field = name == "prefix4" ? &o->prefix4 : &o->prefix6;
    if (!ParseInRange(value, 1, width, field)) {
      return Status::Error(shown + ": expected a prefix length from 1 to " + std::to_string(width));
    }
    return Status::Ok();
  }
  if (name == "aggregate4" || name == "aggregate6") {
    const bool v4 = name == "aggregate4";
    const int width = v4 ? 32 : 128;
    int* plen = v4 ? &o->aggregate4 : &o->aggregate6;
    int* count = v4 ? &o->aggregate4_count : &o->aggregate6_count;
    const std::string_view v = Trim(value);
    if (v.empty() || v == "no" || v == "off" || v == "false") {
      *plen = *count = 0;
      return Status::Ok();
    }
    const size_t colon = v.find(':');
    int p = 0, c = 0;
    if (colon == std::string_view::npos || !ParseInRange(v.substr(0, colon), 1, width - 1, &p) ||
        !ParseInRange(v.substr(colon + 1), 2, 1000000, &c)) {
      return Status::Error(shown + ": expected PREFIXLEN:COUNT, a prefix length from 1 to " +
                           std::to_string(width - 1) + " and a count of at least 2 (e.g. " +
                           (v4 ? "24:5" : "64:3") + ")");
    }
    *plen = p;
    *count = c;
    return Status::Ok();
  }
  return Status::Error(std::string(name) + ": not a prefix option");
}

Status ValidatePrefixOptions(const PrefixOptions& o) {
  if (o.aggregate4 > 0 && o.aggregate4 >= o.prefix4) {
    return Status::Error("aggregate4 = " + std::to_string(o.aggregate4) + ":" +
                         std::to_string(o.aggregate4_count) +
                         ": the aggregate prefix must be shorter than prefix4 (" +
                         std::to_string(o.prefix4) + ")");
  }
  if (o.aggregate6 > 0 && o.aggregate6 >= o.prefix6) {
    return Status::Error("aggregate6 = " + std::to_string(o.aggregate6) + ":" +
                         std::to_string(o.aggregate6_count) +
                         ": the aggregate prefix must be shorter than prefix6 (" +
                         std::to_string(o.prefix6) + ")");
  }
  return Status::Ok();
}

std::string PrefixOptions::Describe() const {
  std::string out;
  auto add = [&](const std::string& part) { out += (out.empty() ? "" : ", ") + part; };
  if (prefix4 != 32) add("prefix4 = " + std::to_string(prefix4));
  if (prefix6 != 128) add("prefix6 = " + std::to_string(prefix6));
  if (aggregate4 > 0) add("aggregate4 = " + std::to_string(aggregate4) + ":" + std::to_string(aggregate4_count));
  if (aggregate6 > 0) add("aggregate6 = " + std::to_string(aggregate6) + ":" + std::to_string(aggregate6_count));
  return out;
}

}  // namespace bantam
