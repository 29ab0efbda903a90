// Date fields to epoch seconds, the way fail2ban 1.0.2's strptime.py turns
// a date template's named groups into a time stamp (reGroupDictStrptime),
// and fail2ban's fixed-offset time zones (validateTimeZone, zone2offset).
//
// The quirks are fail2ban's and kept on purpose, because they decide which
// second a failure is counted at: %f is parsed but ignored (whole seconds
// only); a year-less date more than a day in the future is last year; a
// date without day and month is today (yesterday if in the future); a zone
// shifts the date before those comparisons, which are made against local
// "now"; without a zone the date is local time (libc mktime, TZ honoured).
// Month and day names are the C locale's (English), as under LANG=C.UTF-8.
#ifndef BANTAM_STRPTIME_H_
#define BANTAM_STRPTIME_H_

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "bantam/status.h"

namespace bantam {

// The strptime directives fail2ban reads from a match, by group name.
enum class TimeField : uint8_t { y, Y, m, B, b, d, H, I, M, S, f, A, a, w, j, U, W, z, Z, p };

// The field a named group feeds, or nullopt for names fail2ban ignores.
std::optional<TimeField> TimeFieldFromGroupName(std::string_view name);

// One named group of a match, in group order. `value` is nullopt when the
// group did not take part (Python's None).
struct TimeFieldValue {
  TimeField field;
  std::optional<std::string_view> value;
};

// How a conversion ended. kValueError is what fail2ban's getTime() swallows
// (the date text is then ignored); kOtherError is any other exception
// (KeyError for an unknown zone name, TypeError for a month without a day,
// OverflowError...), which escapes getTime() and makes fail2ban drop the
// line.
enum class StrptimeError : uint8_t { kNone, kValueError, kOtherError };

struct StrptimeResult {
  double time = 0;  // epoch seconds; meaningful only when error == kNone
  StrptimeError error = StrptimeError::kNone;
};

// Local "now" as fail2ban's MyTime.now() sees it (datetime.fromtimestamp):
// local calendar fields plus microseconds. Computed once per `now` value.
struct LocalNow {
  double epoch = 0;
  int year = 1970, month = 1, day = 1;
  int64_t naive_seconds = 0;  // local wall clock as seconds since 1970-01-01 (naive)
  int microsecond = 0;
};
LocalNow MakeLocalNow(double now);

// reGroupDictStrptime(fields, default_tz=...): `fields` in group order (the
// last of duplicate directives wins, as in a Python dict); `has_p` tells
// whether the regex has a group named "p" at all. `default_tz_minutes` is
// the validated logtimezone. Never allocates.
StrptimeResult FieldsToTime(std::span<const TimeFieldValue> fields, bool has_p,
                            const LocalNow& now, std::optional<int> default_tz_minutes);

// validateTimeZone(tz): offset in minutes east of UTC for "UTC", "Z",
// "+0200", "-05:30", "CET+01", "EST"... Error: fail2ban's message,
// "Unknown or unsupported time zone: 'Mars/Base'".
Result<int> ParseTimeZone(std::string_view tz);

// Call after the local zone may have changed (TZ set and tzset() called):
// drops cached local-time conversions.
void LocalZoneChanged();

}  // namespace bantam

#endif  // BANTAM_STRPTIME_H_
