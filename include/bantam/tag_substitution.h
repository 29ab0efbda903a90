// Recursive <tag> substitution over a set of named values, with fail2ban's
// rules: a value's <name> is replaced by the value called name (itself
// substituted first as needed), unknown tags stay as written (they are
// filled at ban time: <ip>, <F-USER>, ...), a tag referring to itself or
// replaced more than 25 times is an error.
#ifndef BANTAM_TAG_SUBSTITUTION_H_
#define BANTAM_TAG_SUBSTITUTION_H_

#include <functional>
#include <optional>
#include <set>
#include <string>

#include "bantam/ordered_map.h"
#include "bantam/status.h"

namespace bantam {

// Supplies values for tags not in the map (may be empty).
using TagFallback = std::function<Result<std::optional<std::string>>(const std::string& tag)>;

// Returns a copy of `tags` with every value substituted. Values named in
// `ignore` are neither substituted nor substituted into others.
// With a non-empty `conditional` (e.g. "family=inet6"), <x> prefers the
// value named "x?family=inet6".
Result<OrderedMap<std::string>> SubstituteTags(const OrderedMap<std::string>& tags,
                                               const std::set<std::string>& ignore,
                                               const TagFallback& fallback,
                                               const std::string& conditional = "");

}  // namespace bantam

#endif  // BANTAM_TAG_SUBSTITUTION_H_
