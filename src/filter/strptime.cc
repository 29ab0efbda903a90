#include "bantam/strptime.h"

#include <time.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <climits>
#include <cmath>
#include <string>

#include "bantam/py.h"
#include "bantam/utf8.h"
#include "bantam/value.h"

namespace bantam {
namespace {

// Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar.
int64_t DaysFromCivil(int64_t y, int m, int d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const int64_t yoe = y - era * 400;
  const int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

void CivilFromDays(int64_t z, int* y, int* m, int* d) {
  z += 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const int64_t doe = z - era * 146097;
  const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const int64_t mp = (5 * doy + 2) / 153;
  *d = static_cast<int>(doy - (153 * mp + 2) / 5 + 1);
  *m = static_cast<int>(mp < 10 ? mp + 3 : mp - 9);
  *y = static_cast<int>(yoe + era * 400 + (*m <= 2));
}

bool IsLeap(int64_t y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }
int DaysInMonth(int64_t y, int m) {
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 2 && IsLeap(y) ? 29 : kDays[m - 1];
}

// Python's datetime range: years 1..9999.
constexpr int64_t kMinNaive = -62135596800;  // 0001-01-01T00:00:00
constexpr int64_t kMaxNaive = 253402300799;  // 9999-12-31T23:59:59
bool InDatetimeRange(int64_t naive) { return naive >= kMinNaive && naive <= kMaxNaive; }

// The English names LocaleTime has under the C locale, lower case.
constexpr std::array<std::string_view, 12> kMonths = {
    "january", "february", "march",     "april",   "may",      "june",
    "july",    "august",   "september", "october", "november", "december"};
constexpr std::array<std::string_view, 7> kWeekdays = {"monday", "tuesday",  "wednesday", "thursday",
                                                       "friday", "saturday", "sunday"};

// list.index(val.lower()) over `names` (full or abbreviated to 3 letters):
// 0-based, or -1 (Python's ValueError). Non-ASCII text never lower-cases to
// an English name (U+212A KELVIN SIGN would, but no name has a "k").
template <size_t N>
int NameIndex(std::string_view val, const std::array<std::string_view, N>& names, bool abbrev) {
  char buf[16];
  if (val.size() >= sizeof buf) return -1;
  for (size_t i = 0; i < val.size(); ++i) {
    const char c = val[i];
    if (static_cast<unsigned char>(c) >= 0x80) return -1;
    buf[i] = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
  }
  const std::string_view lower(buf, val.size());
  for (size_t i = 0; i < N; ++i) {
    if ((abbrev ? names[i].substr(0, 3) : names[i]) == lower) return static_cast<int>(i);
  }
  return -1;
}

// fail2ban's zone abbreviation table (TZ_ABBR_OFFS), minutes east of UTC.
struct ZoneAbbr {
  std::string_view name;
  int minutes;
};
constexpr ZoneAbbr kZoneAbbrs[] = {
    {"Y", -720},    {"X", -660},    {"NUT", -660},  {"SST", -660},  {"W", -600},    {"CKT", -600},
    {"HAST", -600}, {"HST", -600},  {"TAHT", -600}, {"TKT", -600},  {"V", -540},    {"AKST", -540},
    {"GAMT", -540}, {"GIT", -540},  {"HADT", -540}, {"HNY", -540},  {"U", -480},    {"AKDT", -480},
    {"CIST", -480}, {"HAY", -480},  {"HNP", -480},  {"PST", -480},  {"PT", -480},   {"T", -420},
    {"HAP", -420},  {"HNR", -420},  {"MST", -420},  {"PDT", -420},  {"S", -360},    {"CST", -360},
    {"EAST", -360}, {"GALT", -360}, {"HAR", -360},  {"HNC", -360},  {"MDT", -360},  {"R", -300},
    {"CDT", -300},  {"COT", -300},  {"EASST", -300}, {"ECT", -300}, {"EST", -300},  {"ET", -300},
    {"HAC", -300},  {"HNE", -300},  {"PET", -300},  {"Q", -240},    {"AST", -240},  {"BOT", -240},
    {"CLT", -240},  {"COST", -240}, {"EDT", -240},  {"FKT", -240},  {"GYT", -240},  {"HAE", -240},
    {"HNA", -240},  {"PYT", -240},  {"P", -180},    {"ADT", -180},  {"ART", -180},  {"BRT", -180},
    {"CLST", -180}, {"FKST", -180}, {"GFT", -180},  {"HAA", -180},  {"PMST", -180}, {"PYST", -180},
    {"SRT", -180},  {"UYT", -180},  {"WGT", -180},  {"O", -120},    {"BRST", -120}, {"FNT", -120},
    {"PMDT", -120}, {"UYST", -120}, {"WGST", -120}, {"N", -60},     {"AZOT", -60},  {"CVT", -60},
    {"EGT", -60},   {"Z", 0},       {"EGST", 0},    {"GMT", 0},     {"UTC", 0},     {"WET", 0},
    {"WT", 0},      {"A", 60},      {"CET", 60},    {"DFT", 60},    {"WAT", 60},    {"WEDT", 60},
    {"WEST", 60},   {"B", 120},     {"CAT", 120},   {"CEDT", 120},  {"CEST", 120},  {"EET", 120},
    {"SAST", 120},  {"WAST", 120},  {"C", 180},     {"EAT", 180},   {"EEDT", 180},  {"EEST", 180},
    {"IDT", 180},   {"MSK", 180},   {"D", 240},     {"AMT", 240},   {"AZT", 240},   {"GET", 240},
    {"GST", 240},   {"KUYT", 240},  {"MSD", 240},   {"MUT", 240},   {"RET", 240},   {"SAMT", 240},
    {"SCT", 240},   {"E", 300},     {"AMST", 300},  {"AQTT", 300},  {"AZST", 300},  {"HMT", 300},
    {"MAWT", 300},  {"MVT", 300},   {"PKT", 300},   {"TFT", 300},   {"TJT", 300},   {"TMT", 300},
    {"UZT", 300},   {"YEKT", 300},  {"F", 360},     {"ALMT", 360},  {"BIOT", 360},  {"BTT", 360},
    {"IOT", 360},   {"KGT", 360},   {"NOVT", 360},  {"OMST", 360},  {"YEKST", 360}, {"G", 420},
    {"CXT", 420},   {"DAVT", 420},  {"HOVT", 420},  {"ICT", 420},   {"KRAT", 420},  {"NOVST", 420},
    {"OMSST", 420}, {"THA", 420},   {"WIB", 420},   {"H", 480},     {"ACT", 480},   {"AWST", 480},
    {"BDT", 480},   {"BNT", 480},   {"CAST", 480},  {"HKT", 480},   {"IRKT", 480},  {"KRAST", 480},
    {"MYT", 480},   {"PHT", 480},   {"SGT", 480},   {"ULAT", 480},  {"WITA", 480},  {"WST", 480},
    {"I", 540},     {"AWDT", 540},  {"IRKST", 540}, {"JST", 540},   {"KST", 540},   {"PWT", 540},
    {"TLT", 540},   {"WDT", 540},   {"WIT", 540},   {"YAKT", 540},  {"K", 600},     {"AEST", 600},
    {"ChST", 600},  {"PGT", 600},   {"VLAT", 600},  {"YAKST", 600}, {"YAPT", 600},  {"L", 660},
    {"AEDT", 660},  {"LHDT", 660},  {"MAGT", 660},  {"NCT", 660},   {"PONT", 660},  {"SBT", 660},
    {"VLAST", 660}, {"VUT", 660},   {"M", 720},     {"ANAST", 720}, {"ANAT", 720},  {"FJT", 720},
    {"GILT", 720},  {"MAGST", 720}, {"MHT", 720},   {"NZST", 720},  {"PETST", 720}, {"PETT", 720},
    {"TVT", 720},   {"WFT", 720},   {"FJST", 780},  {"NZDT", 780},  {"NFT", 690},   {"ACDT", 630},
    {"LHST", 630},  {"ACST", 570},  {"CCT", 390},   {"MMT", 390},   {"NPT", 345},   {"SLT", 330},
    {"AFT", 270},   {"IRDT", 270},  {"IRST", 210},  {"HAT", -150},  {"NDT", -150},  {"HNT", -210},
    {"NST", -210},  {"NT", -210},   {"HLV", -270},  {"VET", -270},  {"MART", -570}, {"MIT", -570},
};

std::optional<int> ZoneAbbrOffset(std::string_view name) {
  if (name.empty()) return 0;
  for (const ZoneAbbr& z : kZoneAbbrs) {
    if (z.name == name) return z.minutes;
  }
  return std::nullopt;
}

// One decimal digit (any script) at s[*pos], advancing; -1 if none.
int TakeDigit(std::string_view s, size_t* pos) {
  if (*pos >= s.size()) return -1;
  size_t p = *pos;
  const int v = PyDecimalValue(NextCodePoint(s, &p));
  if (v >= 0) *pos = p;
  return v;
}

struct ZoneParse {
  std::optional<int> minutes;
  StrptimeError error = StrptimeError::kNone;
};

// validateTimeZone + zone2offset on the text of a zone:
// "^([A-Z](?:[A-Z]{2,4})?)?([+-][01]\d(?::?\d{2})?)?$". No match is a
// ValueError; an abbreviation missing from the table is a KeyError.
ZoneParse ParseZone(std::string_view tz) {
  if (!tz.empty() && tz.back() == '\n') tz.remove_suffix(1);  // Python's "$"
  size_t letters = 0;
  while (letters < tz.size() && tz[letters] >= 'A' && tz[letters] <= 'Z') ++letters;
  if (letters == 2 || letters > 5) return {std::nullopt, StrptimeError::kValueError};
  const std::string_view abbr = tz.substr(0, letters);
  std::string_view rest = tz.substr(letters);
  int offset = 0;
  if (!rest.empty()) {
    if (rest[0] != '+' && rest[0] != '-') return {std::nullopt, StrptimeError::kValueError};
    const int sign = rest[0] == '-' ? -1 : 1;
    size_t pos = 1;
    const int h1 = TakeDigit(rest, &pos);
    if (h1 != 0 && h1 != 1) return {std::nullopt, StrptimeError::kValueError};
    const int h2 = TakeDigit(rest, &pos);
    if (h2 < 0) return {std::nullopt, StrptimeError::kValueError};
    const int hours = h1 * 10 + h2;
    int minutes = 0;
    if (pos < rest.size()) {
      if (rest[pos] == ':') ++pos;
      const int m1 = TakeDigit(rest, &pos);
      const int m2 = m1 < 0 ? -1 : TakeDigit(rest, &pos);
      if (m2 < 0 || pos != rest.size()) return {std::nullopt, StrptimeError::kValueError};
      minutes = m1 * 10 + m2;
    }
    offset = sign * (hours * 60 + minutes);
  }
  const std::optional<int> base = ZoneAbbrOffset(abbr);
  if (!base) return {std::nullopt, StrptimeError::kOtherError};
  return {*base + offset, StrptimeError::kNone};
}

// Naive (wall clock, no zone) date-time as Python's datetime holds it.
struct Naive {
  int64_t seconds = 0;  // since 1970-01-01T00:00:00
  int microsecond = 0;
};

Naive MakeNaive(int64_t y, int m, int d, int hh, int mm, int ss) {
  return {DaysFromCivil(y, m, d) * 86400 + hh * 3600 + mm * 60 + ss, 0};
}

bool Later(const Naive& a, const Naive& b) {
  return a.seconds != b.seconds ? a.seconds > b.seconds : a.microsecond > b.microsecond;
}

void SplitNaive(int64_t naive, int* y, int* m, int* d, int* hh, int* mm, int* ss) {
  int64_t days = naive / 86400;
  int64_t rem = naive % 86400;
  if (rem < 0) {
    rem += 86400;
    --days;
  }
  CivilFromDays(days, y, m, d);
  *hh = static_cast<int>(rem / 3600);
  *mm = static_cast<int>(rem / 60 % 60);
  *ss = static_cast<int>(rem % 60);
}

// datetime.date(year, 1, 1).weekday(): Monday is 0.
int WeekdayOfJan1(int64_t year) {
  const int64_t days = DaysFromCivil(year, 1, 1);  // 1970-01-01 was a Thursday
  return static_cast<int>(((days % 7) + 7 + 3) % 7);
}

constexpr int64_t kIntLimit = INT_MAX;  // beyond: Python's OverflowError in datetime()

// int() of a date field, saturated just past the int range: beyond it
// datetime() raises OverflowError, which callers check for.
std::optional<int64_t> FieldInt(std::string_view text) {
  const std::optional<int64_t> n = PyInt(text);
  if (!n) return std::nullopt;
  return std::clamp<int64_t>(*n, -(kIntLimit + 1), kIntLimit + 1);
}

}  // namespace

std::optional<TimeField> TimeFieldFromGroupName(std::string_view name) {
  if (name.size() != 1) return std::nullopt;
  switch (name[0]) {
    case 'y': return TimeField::y;
    case 'Y': return TimeField::Y;
    case 'm': return TimeField::m;
    case 'B': return TimeField::B;
    case 'b': return TimeField::b;
    case 'd': return TimeField::d;
    case 'H': return TimeField::H;
    case 'I': return TimeField::I;
    case 'M': return TimeField::M;
    case 'S': return TimeField::S;
    case 'f': return TimeField::f;
    case 'A': return TimeField::A;
    case 'a': return TimeField::a;
    case 'w': return TimeField::w;
    case 'j': return TimeField::j;
    case 'U': return TimeField::U;
    case 'W': return TimeField::W;
    case 'z': return TimeField::z;
    case 'Z': return TimeField::Z;
    case 'p': return TimeField::p;
    default: return std::nullopt;
  }
}

namespace {
// Bumped whenever the local zone may have changed (TZ re-read), so cached
// conversions are dropped.
std::atomic<uint64_t> g_zone_generation{1};
}  // namespace

void LocalZoneChanged() { g_zone_generation.fetch_add(1, std::memory_order_relaxed); }

LocalNow MakeLocalNow(double now) {
  // datetime.fromtimestamp(now): microseconds rounded half-even, then the
  // local calendar fields of the whole second.
  double int_part;
  double frac = std::modf(now, &int_part);
  frac = std::nearbyint(frac * 1e6);
  if (frac >= 1e6) {
    frac -= 1e6;
    int_part += 1;
  } else if (frac < 0) {
    frac += 1e6;
    int_part -= 1;
  }
  LocalNow out;
  out.epoch = now;
  out.microsecond = static_cast<int>(frac);
  const time_t t = static_cast<time_t>(int_part);
  struct tm tm {};
  ::localtime_r(&t, &tm);
  out.year = tm.tm_year + 1900;
  out.month = tm.tm_mon + 1;
  out.day = tm.tm_mday;
  out.naive_seconds = MakeNaive(out.year, out.month, out.day, tm.tm_hour, tm.tm_min, tm.tm_sec).seconds;
  return out;
}

Result<int> ParseTimeZone(std::string_view tz) {
  const ZoneParse z = ParseZone(tz);
  if (!z.minutes) return Status::Error("Unknown or unsupported time zone: " + PyRepr(tz));
  return *z.minutes;
}

StrptimeResult FieldsToTime(std::span<const TimeFieldValue> fields, bool has_p,
                            const LocalNow& now, std::optional<int> default_tz_minutes) {
  constexpr StrptimeResult kValueError{0, StrptimeError::kValueError};
  constexpr StrptimeResult kOtherError{0, StrptimeError::kOtherError};
  std::optional<int64_t> year, month, day, julian, week_of_year, weekday;
  std::optional<int> tzoffset;
  int64_t hour = 0, minute = 0, second = 0;
  bool week_starts_monday = false;
  // The AM/PM text, looked up directly (found_dict.get('p', '')): a "p"
  // group that did not take part is None and None.lower() raises.
  std::optional<std::string_view> ampm;
  bool ampm_none = false;
  if (has_p) {
    for (const TimeFieldValue& f : fields) {
      if (f.field == TimeField::p) {
        ampm = f.value;
        ampm_none = !f.value.has_value();
      }
    }
  }
  for (const TimeFieldValue& f : fields) {
    if (!f.value) continue;
    const std::string_view val = *f.value;
    std::optional<int64_t> n;
    switch (f.field) {
      case TimeField::y: case TimeField::Y: case TimeField::m: case TimeField::d:
      case TimeField::H: case TimeField::I: case TimeField::M: case TimeField::S:
      case TimeField::w: case TimeField::j: case TimeField::U: case TimeField::W:
        n = FieldInt(val);
        if (!n) return kValueError;
        break;
      default:
        break;
    }
    switch (f.field) {
      case TimeField::y:
        year = *n <= 2000 ? *n + 2000 : *n;  // fail2ban: two-digit years are 20xx
        break;
      case TimeField::Y: year = *n; break;
      case TimeField::m: month = *n; break;
      case TimeField::B: case TimeField::b: {
        const int i = NameIndex(val, kMonths, f.field == TimeField::b);
        if (i < 0) return kValueError;
        month = i + 1;
        break;
      }
      case TimeField::d: day = *n; break;
      case TimeField::H: hour = *n; break;
      case TimeField::I: {
        hour = *n;
        if (ampm_none) return kOtherError;
        char p[3] = {0, 0, 0};
        const std::string_view a = ampm.value_or("");
        if (a.size() <= 2) {
          for (size_t i = 0; i < a.size(); ++i) {
            p[i] = (a[i] >= 'A' && a[i] <= 'Z') ? static_cast<char>(a[i] - 'A' + 'a') : a[i];
          }
        }
        const std::string_view lower = a.size() <= 2 ? std::string_view(p, a.size()) : "?";
        if (lower.empty() || lower == "am") {
          if (hour == 12) hour = 0;
        } else if (lower == "pm") {
          if (hour != 12) hour += 12;
        }
        break;
      }
      case TimeField::M: minute = *n; break;
      case TimeField::S: second = *n; break;
      case TimeField::f: break;  // fail2ban parses but drops the fraction
      case TimeField::A: case TimeField::a: {
        const int i = NameIndex(val, kWeekdays, f.field == TimeField::a);
        if (i < 0) return kValueError;
        weekday = i;
        break;
      }
      case TimeField::w:
        weekday = *n - 1;
        if (*weekday < 0) weekday = 6;
        break;
      case TimeField::j: julian = *n; break;
      case TimeField::U: case TimeField::W:
        week_of_year = *n;
        week_starts_monday = f.field == TimeField::W;
        break;
      case TimeField::z: case TimeField::Z: {
        if (val == "Z" || val == "UTC" || val == "GMT") {
          tzoffset = 0;
        } else {
          const ZoneParse z = ParseZone(val);
          if (!z.minutes) return {0, z.error};
          tzoffset = *z.minutes;
        }
        break;
      }
      case TimeField::p: break;
    }
  }

  bool assume_year = false;
  if (!year) {
    year = now.year;
    assume_year = true;
  }
  if (!month || !day) {
    if (!julian && week_of_year && weekday) {
      // _strptime's _calc_julian_from_U_or_W.
      if (*year < 1 || *year > 9999) return kValueError;
      int64_t first_weekday = WeekdayOfJan1(*year);
      int64_t dow = *weekday;
      if (!week_starts_monday) {
        first_weekday = (first_weekday + 1) % 7;
        dow = (dow + 1) % 7;
      }
      const int64_t week_0_length = (7 - first_weekday) % 7;
      julian = *week_of_year == 0 ? 1 + dow - first_weekday
                                  : 1 + week_0_length + 7 * (*week_of_year - 1) + dow;
    }
    if (julian) {
      if (*year < 1 || *year > 9999) return kValueError;
      const int64_t days = DaysFromCivil(*year, 1, 1) + *julian - 1;
      if (days < DaysFromCivil(1, 1, 1) || days > DaysFromCivil(9999, 12, 31)) return kValueError;
      int y, m, d;
      CivilFromDays(days, &y, &m, &d);
      year = y;
      month = m;
      day = d;
    }
  }
  bool assume_today = false;
  if (!month && !day) {
    month = now.month;
    day = now.day;
    assume_today = true;
  }
  if (!month || !day) return kOtherError;  // datetime(..., None, ...): TypeError

  // datetime(year, month, day, hour, minute, second)
  for (int64_t v : {*year, *month, *day, hour, minute, second}) {
    if (v > kIntLimit || v < -kIntLimit) return kOtherError;
  }
  if (*year < 1 || *year > 9999 || *month < 1 || *month > 12) return kValueError;
  if (*day < 1 || *day > DaysInMonth(*year, static_cast<int>(*month))) return kValueError;
  if (hour < 0 || hour > 23 || minute < 0 || minute > 59 || second < 0 || second > 59) {
    return kValueError;
  }
  Naive date = MakeNaive(*year, static_cast<int>(*month), static_cast<int>(*day),
                         static_cast<int>(hour), static_cast<int>(minute), static_cast<int>(second));
  if (!tzoffset && default_tz_minutes) tzoffset = *default_tz_minutes;
  if (tzoffset) {
    date.seconds -= int64_t{*tzoffset} * 60;
    if (!InDatetimeRange(date.seconds)) return kOtherError;  // OverflowError
  }
  // The comparisons below are against local "now" even when the date was
  // shifted to UTC above: fail2ban's behaviour, kept.
  const Naive local_now{now.naive_seconds, now.microsecond};
  if (assume_today && Later(date, local_now)) {
    date.seconds -= 86400;
    if (!InDatetimeRange(date.seconds)) return kOtherError;
  }
  if (assume_year && Later(date, Naive{local_now.seconds + 86400, local_now.microsecond})) {
    // date.replace(year=year-1, month=month, day=day): the time of day
    // stays as shifted, the calendar day is the one parsed.
    int y, m, d, hh, mm, ss;
    SplitNaive(date.seconds, &y, &m, &d, &hh, &mm, &ss);
    const int64_t new_year = *year - 1;
    if (new_year < 1 || *day > DaysInMonth(new_year, static_cast<int>(*month))) return kValueError;
    date = MakeNaive(new_year, static_cast<int>(*month), static_cast<int>(*day), hh, mm, ss);
  }
  if (tzoffset) return {static_cast<double>(date.seconds), StrptimeError::kNone};

  // time.mktime(date.timetuple()): local time, DST decided by libc.
  // mktime() re-validates the zone (a stat of /etc/localtime) on every
  // call, so the epoch of the minute is cached: log lines come in order and
  // zone offsets only change on minute boundaries.
  const int64_t minute_key = date.seconds - ((date.seconds % 60) + 60) % 60;
  const int sec_in_minute = static_cast<int>(date.seconds - minute_key);
  thread_local int64_t cached_key = INT64_MIN;
  thread_local time_t cached_base = 0;
  thread_local uint64_t cached_generation = 0;
  const uint64_t generation = g_zone_generation.load(std::memory_order_relaxed);
  if (minute_key != cached_key || generation != cached_generation) {
    cached_generation = generation;
    int y, m, d, hh, mm, ss;
    SplitNaive(minute_key, &y, &m, &d, &hh, &mm, &ss);
    struct tm tm {};
    tm.tm_year = y - 1900;
    tm.tm_mon = m - 1;
    tm.tm_mday = d;
    tm.tm_hour = hh;
    tm.tm_min = mm;
    tm.tm_sec = ss;
    tm.tm_isdst = -1;
    tm.tm_wday = -1;  // sentinel, as Python uses it to detect failure
    const time_t t = ::mktime(&tm);
    if (t == static_cast<time_t>(-1) && tm.tm_wday == -1) return kOtherError;
    cached_key = minute_key;
    cached_base = t;
  }
  return {static_cast<double>(cached_base + sec_in_minute), StrptimeError::kNone};
}

}  // namespace bantam
