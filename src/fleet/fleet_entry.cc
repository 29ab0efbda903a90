#include "bantam/fleet_entry.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <charconv>
#include <cmath>
#include <cstdio>

#include "bantam/ip_address.h"
#include "bantam/shared_library.h"

namespace bantam {

namespace {

constexpr const char* kOrder[] = {"v", "op", "node", "jail", "ip", "left", "count", "time"};

// What the MAC covers: each field in kOrder as "name=len:value;", so no
// choice of values can make two different entries sign the same text.
std::string MacInput(const FleetFields& fields) {
  std::string out = "bantam-fleet-v1;";
  for (const char* name : kOrder) {
    for (const auto& [k, v] : fields) {
      if (k != name) continue;
      out += k;
      out += '=';
      out += std::to_string(v.size());
      out += ':';
      out += v;
      out += ';';
      break;
    }
  }
  return out;
}

std::string TimeText(double t) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.3f", t);
  return buf;
}

bool ParseInt(std::string_view s, int64_t* out) {
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && p == s.data() + s.size();
}

bool ParseTime(std::string_view s, double* out) {
  if (s.empty() || s.size() > 32) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && p == s.data() + s.size() && std::isfinite(*out) && *out >= 0;
}

}  // namespace

const char* FleetOpName(FleetOp op) {
  switch (op) {
    case FleetOp::kUnban: return "unban";
    case FleetOp::kFail: return "fail";
    case FleetOp::kBan: break;
  }
  return "ban";
}

bool ValidFleetName(std::string_view text) {
  if (text.empty() || text.size() > 64) return false;
  for (char c : text) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-' || c == '@' || c == ':';
    if (!ok) return false;
  }
  return true;
}

namespace {

// libcrypto, loaded when a fleet is configured (shared_library.h).
struct CryptoApi {
  decltype(&HMAC) hmac;
  decltype(&EVP_sha256) sha256;
};
CryptoApi g_crypto;  // filled once by LoadFleetCrypto, read-only after

// Compares in time independent of where the texts differ.
bool EqualConstantTime(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

}  // namespace

Status LoadFleetCrypto() {
  static const Status loaded = []() -> Status {
    Result<const SharedLibrary*> lib = SharedLibrary::Load("libcrypto.so.3", "libssl3");
    if (!lib.ok()) return lib.status();
    CryptoApi a{};
    if (Status s = (*lib)->Bind("HMAC", &a.hmac); !s.ok()) return s;
    if (Status s = (*lib)->Bind("EVP_sha256", &a.sha256); !s.ok()) return s;
    g_crypto = a;
    return Status::Ok();
  }();
  return loaded;
}

std::string HmacSha256Hex(std::string_view key, std::string_view data) {
  // Empty (a MAC no entry carries) only if libcrypto is missing, which
  // Fleet::Start refuses to run without.
  if (!LoadFleetCrypto().ok()) return "";
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  g_crypto.hmac(g_crypto.sha256(), key.data(), static_cast<int>(key.size()),
                reinterpret_cast<const unsigned char*>(data.data()), data.size(), mac, &len);
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(len * 2);
  for (unsigned int i = 0; i < len; ++i) {
    out += kHex[mac[i] >> 4];
    out += kHex[mac[i] & 15];
  }
  return out;
}

FleetFields EncodeFleetEntry(const FleetEntry& e, std::string_view key) {
  FleetFields f = {
      {"v", "1"},
      {"op", FleetOpName(e.op)},
      {"node", e.node},
      {"jail", e.jail},
      {"ip", e.ip},
      {"left", std::to_string(e.left)},
      {"count", std::to_string(e.count)},
      {"time", TimeText(e.time)},
  };
  f.emplace_back("mac", HmacSha256Hex(key, MacInput(f)));
  return f;
}

Result<FleetEntry> DecodeFleetEntry(const FleetFields& fields, std::string_view key) {
  if (fields.size() > kFleetMaxFields) {
    return Status::Error("oversized: " + std::to_string(fields.size()) + " fields");
  }
  const std::string* seen[std::size(kOrder)] = {};
  const std::string* mac = nullptr;
  for (const auto& [k, v] : fields) {
    if (k.size() > kFleetMaxValue || v.size() > kFleetMaxValue) {
      return Status::Error("oversized: a field of " + std::to_string(std::max(k.size(), v.size())) +
                           " bytes");
    }
    bool known = false;
    for (size_t i = 0; i < std::size(kOrder); ++i) {
      if (k != kOrder[i]) continue;
      if (seen[i] != nullptr) return Status::Error("malformed: field '" + k + "' twice");
      seen[i] = &v;
      known = true;
    }
    if (k == "mac") {
      if (mac != nullptr) return Status::Error("malformed: field 'mac' twice");
      mac = &v;
      known = true;
    }
    if (!known) return Status::Error("malformed: unknown field");
  }
  for (size_t i = 0; i < std::size(kOrder); ++i) {
    if (seen[i] == nullptr) return Status::Error(std::string("malformed: no field '") + kOrder[i] + "'");
  }
  if (mac == nullptr) return Status::Error("unsigned: no mac");
  // The MAC first: nothing an unsigned writer sent is interpreted further.
  const std::string want = HmacSha256Hex(key, MacInput(fields));
  if (want.empty() || !EqualConstantTime(*mac, want)) {
    return Status::Error("bad mac");
  }
  FleetEntry e;
  if (*seen[0] != "1") return Status::Error("malformed: version " + *seen[0]);
  if (*seen[1] == "ban") {
    e.op = FleetOp::kBan;
  } else if (*seen[1] == "unban") {
    e.op = FleetOp::kUnban;
  } else if (*seen[1] == "fail") {
    e.op = FleetOp::kFail;
  } else {
    return Status::Error("malformed: op");
  }
  if (!ValidFleetName(*seen[2])) return Status::Error("malformed: node name");
  if (!ValidFleetName(*seen[3])) return Status::Error("malformed: jail name");
  e.node = *seen[2];
  e.jail = *seen[3];
  Result<IpAddr> ip = IpAddr::Parse(*seen[4]);
  if (!ip.ok() || !ip->is_ip() || ip->ToString() != *seen[4]) return Status::Error("malformed: address");
  e.ip = *seen[4];
  if (!ParseInt(*seen[5], &e.left) || e.left < -1) return Status::Error("malformed: left");
  if (!ParseInt(*seen[6], &e.count) || e.count < 0) return Status::Error("malformed: count");
  if (!ParseTime(*seen[7], &e.time)) return Status::Error("malformed: time");
  return e;
}

}  // namespace bantam
