#include "bantam/control_protocol.h"

#include <utility>

#include "bantam/py.h"

namespace bantam {
namespace {

const Value* Find(const Value::Dict& d, std::string_view key) {
  // The last occurrence wins, as with Python's json.loads.
  const Value* found = nullptr;
  for (const auto& [k, v] : d)
    if (k == key) found = &v;
  return found;
}

}  // namespace

Result<ControlRequest> ParseControlRequest(std::string_view line) {
  if (line.size() + 1 > kMaxControlLineBytes) {
    return Status::Error("request longer than " + std::to_string(kMaxControlLineBytes) + " bytes");
  }
  Result<Value> v = Value::ParseJson(line, kMaxControlRequestDepth);
  if (!v.ok()) return v.status();
  if (!v->is_dict()) return Status::Error("a request must be a JSON object");
  const Value* version = Find(v->as_dict(), "v");
  if (version == nullptr) return Status::Error("missing protocol version 'v'");
  if (!version->is_int()) return Status::Error("protocol version 'v' must be an integer");
  if (version->as_int() != kControlProtocolVersion) {
    return Status::Error("unsupported protocol version " + std::to_string(version->as_int()) +
                         " (this server speaks " + std::to_string(kControlProtocolVersion) + ")");
  }
  const Value* cmd = Find(v->as_dict(), "cmd");
  if (cmd == nullptr || !cmd->is_list() || cmd->as_list().empty()) {
    return Status::Error("'cmd' must be a non-empty list of strings");
  }
  ControlRequest req;
  req.cmd.reserve(cmd->as_list().size());
  for (const Value& w : cmd->as_list()) {
    if (!w.is_string()) return Status::Error("'cmd' must be a non-empty list of strings");
    req.cmd.push_back(w.as_string());
  }
  return req;
}

std::string EncodeControlRequest(const std::vector<std::string>& cmd) {
  Value::List words(cmd.begin(), cmd.end());
  Value::Dict d;
  d.emplace_back("v", kControlProtocolVersion);
  d.emplace_back("cmd", Value(std::move(words)));
  std::string out = Value(std::move(d)).ToJson();
  out.push_back('\n');
  return out;
}

ControlReply ControlReply::Failure(std::string type, std::string message) {
  ControlError e;
  e.type = std::move(type);
  e.args.emplace_back(message);
  e.message = std::move(message);
  return Failure(std::move(e));
}

ControlReply ControlReply::KeyFailure(std::string type, const std::string& key) {
  ControlError e;
  e.type = std::move(type);
  e.args.emplace_back(key);
  e.message = PyRepr(key);
  return Failure(std::move(e));
}

std::string EncodeControlReply(const ControlReply& reply) {
  std::string out = "{\"v\":" + std::to_string(kControlProtocolVersion);
  if (reply.ok) {
    out += ",\"ok\":true,\"value\":";
    reply.value.AppendJson(&out);
  } else {
    out += ",\"ok\":false,\"error\":{\"type\":";
    out += JsonQuote(reply.error.type);
    out += ",\"args\":";
    Value(reply.error.args).AppendJson(&out);
    out += ",\"message\":";
    out += JsonQuote(reply.error.message);
    out += "}";
  }
  out += "}\n";
  return out;
}

Result<ControlReply> ParseControlReply(std::string_view line) {
  Result<Value> v = Value::ParseJson(line);
  if (!v.ok()) return v.status();
  if (!v->is_dict()) return Status::Error("a reply must be a JSON object");
  const Value::Dict& d = v->as_dict();
  const Value* version = Find(d, "v");
  if (version == nullptr || !version->is_int() || version->as_int() != kControlProtocolVersion) {
    return Status::Error("unsupported reply version");
  }
  const Value* ok = Find(d, "ok");
  if (ok == nullptr || !ok->is_bool()) return Status::Error("reply without 'ok'");
  if (ok->as_bool()) {
    const Value* value = Find(d, "value");
    return ControlReply::Success(value ? *value : Value());
  }
  const Value* error = Find(d, "error");
  if (error == nullptr || !error->is_dict()) return Status::Error("failed reply without 'error'");
  ControlError e;
  const Value* type = Find(error->as_dict(), "type");
  const Value* args = Find(error->as_dict(), "args");
  const Value* message = Find(error->as_dict(), "message");
  if (type == nullptr || !type->is_string()) return Status::Error("error without 'type'");
  e.type = type->as_string();
  if (args != nullptr && args->is_list()) e.args = args->as_list();
  if (message != nullptr && message->is_string()) e.message = message->as_string();
  return ControlReply::Failure(std::move(e));
}

bool IsReadOnlyCommand(const std::vector<std::string>& cmd) {
  if (cmd.empty()) return false;
  const std::string& c = cmd[0];
  return c == "ping" || c == "version" || c == "echo" || c == "server-status" ||
         c == "status" || c == "banned" || c == "get";
}

}  // namespace bantam
