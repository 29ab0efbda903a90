#include "bantam/control_protocol.h"

#include <gtest/gtest.h>

#include <string>

namespace bantam {
namespace {

TEST(ControlProtocol, ParsesARequest) {
  Result<ControlRequest> r = ParseControlRequest(R"({"v": 1, "cmd": ["status", "asterisk"]})");
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->cmd, (std::vector<std::string>{"status", "asterisk"}));
}

TEST(ControlProtocol, IgnoresUnknownKeysAndSurroundingWhitespace) {
  Result<ControlRequest> r = ParseControlRequest(" {\"id\": 7, \"cmd\": [\"ping\"], \"v\": 1}\r");
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->cmd, std::vector<std::string>{"ping"});
}

TEST(ControlProtocol, KeepsUnicodeWords) {
  Result<ControlRequest> r = ParseControlRequest(R"({"v":1,"cmd":["echo","\u00e9\ud83d\ude00"]})");
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->cmd[1], "\xc3\xa9\xf0\x9f\x98\x80");
}

TEST(ControlProtocol, RejectsWhatIsNotAVersion1Request) {
  struct Case {
    const char* line;
    const char* error;
  } cases[] = {
      {"", "JSON: offset 0"},
      {"ping", "JSON: offset 0"},
      {"[\"ping\"]", "a request must be a JSON object"},
      {R"({"cmd":["ping"]})", "missing protocol version 'v'"},
      {R"({"v":"1","cmd":["ping"]})", "protocol version 'v' must be an integer"},
      {R"({"v":2,"cmd":["ping"]})", "unsupported protocol version 2 (this server speaks 1)"},
      {R"({"v":1})", "'cmd' must be a non-empty list of strings"},
      {R"({"v":1,"cmd":[]})", "'cmd' must be a non-empty list of strings"},
      {R"({"v":1,"cmd":"ping"})", "'cmd' must be a non-empty list of strings"},
      {R"({"v":1,"cmd":["set",1]})", "'cmd' must be a non-empty list of strings"},
      {R"({"v":1,"cmd":[["ping"]]})", "'cmd' must be a non-empty list of strings"},
      {R"({"v":1,"cmd":["ping"]} x)", "JSON: offset"},
  };
  for (const Case& c : cases) {
    Result<ControlRequest> r = ParseControlRequest(c.line);
    ASSERT_FALSE(r.ok()) << c.line;
    EXPECT_NE(r.status().message().find(c.error), std::string::npos)
        << c.line << " -> " << r.status().message();
  }
}

TEST(ControlProtocol, RejectsDeepNestingAndOversizedLines) {
  std::string deep = R"({"v":1,"cmd":["x"],"y":)" + std::string(100, '[') + std::string(100, ']') + "}";
  EXPECT_FALSE(ParseControlRequest(deep).ok());
  std::string big = R"({"v":1,"cmd":[")" + std::string(kMaxControlLineBytes, 'a') + "\"]}";
  Result<ControlRequest> r = ParseControlRequest(big);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "request longer than 1048576 bytes");
}

TEST(ControlProtocol, EncodesRequestsAndReplies) {
  EXPECT_EQ(EncodeControlRequest({"set", "j", "banip", "1.2.3.4"}),
            "{\"v\": 1, \"cmd\": [\"set\", \"j\", \"banip\", \"1.2.3.4\"]}\n");
  Value::List status = {Value::List{"Number of jail", 1}, Value::List{"Jail list", "asterisk"}};
  EXPECT_EQ(EncodeControlReply(ControlReply::Success(Value(status))),
            "{\"v\":1,\"ok\":true,\"value\":[[\"Number of jail\", 1], [\"Jail list\", \"asterisk\"]]}\n");
  EXPECT_EQ(EncodeControlReply(ControlReply::KeyFailure("UnknownJailException", "asterisk")),
            "{\"v\":1,\"ok\":false,\"error\":{\"type\":\"UnknownJailException\",\"args\":"
            "[\"asterisk\"],\"message\":\"'asterisk'\"}}\n");
  EXPECT_EQ(EncodeControlReply(ControlReply::Failure("Exception", "Invalid command")),
            "{\"v\":1,\"ok\":false,\"error\":{\"type\":\"Exception\",\"args\":[\"Invalid "
            "command\"],\"message\":\"Invalid command\"}}\n");
}

TEST(ControlProtocol, RepliesRoundTrip) {
  ControlReply ok = ControlReply::Success(Value(Value::Dict{{"asterisk", Value::List{"1.2.3.4"}}}));
  std::string line = EncodeControlReply(ok);
  line.pop_back();
  Result<ControlReply> back = ParseControlReply(line);
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_TRUE(back->ok);
  EXPECT_EQ(back->value, ok.value);

  line = EncodeControlReply(ControlReply::Failure("ValueError", "not banned: ['1.2.3.4']"));
  line.pop_back();
  back = ParseControlReply(line);
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_FALSE(back->ok);
  EXPECT_EQ(back->error.type, "ValueError");
  EXPECT_EQ(back->error.message, "not banned: ['1.2.3.4']");
  EXPECT_EQ(back->error.args, Value::List{"not banned: ['1.2.3.4']"});

  EXPECT_FALSE(ParseControlReply(R"({"v":1})").ok());
  EXPECT_FALSE(ParseControlReply(R"({"v":1,"ok":false})").ok());
}

TEST(ControlProtocol, ReadOnlyCommands) {
  for (auto cmd : std::vector<std::vector<std::string>>{
           {"ping"}, {"version"}, {"echo", "x"}, {"status"}, {"status", "j", "short"},
           {"banned"}, {"banned", "1.2.3.4"}, {"get", "j", "banip"}, {"get", "loglevel"},
           {"server-status"}}) {
    EXPECT_TRUE(IsReadOnlyCommand(cmd)) << cmd[0];
  }
  for (auto cmd : std::vector<std::vector<std::string>>{
           {"set", "j", "banip", "1.2.3.4"}, {"unban", "--all"}, {"reload"}, {"stop"},
           {"start", "j"}, {"add", "j"}, {"flushlogs"}, {"sleep", "1"}, {"multi-set"}, {}}) {
    EXPECT_FALSE(IsReadOnlyCommand(cmd)) << (cmd.empty() ? "" : cmd[0]);
  }
}

}  // namespace
}  // namespace bantam
