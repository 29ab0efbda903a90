#include "bantam/ami_protocol.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <vector>

namespace bantam {
namespace {

// What a framer reported, in order: "banner:...", "msg:Key=value|...",
// "drop:why".
struct Recorder {
  std::vector<std::string> events;
  AmiFramer::Callbacks Callbacks() {
    return {
        [this](std::string_view b) { events.push_back("banner:" + std::string(b)); },
        [this](const AmiMessage& m) {
          std::string s = "msg:";
          for (size_t i = 0; i < m.headers.size(); ++i) {
            if (i) s += '|';
            s += std::string(m.headers[i].first) + "=" + std::string(m.headers[i].second);
          }
          events.push_back(s);
        },
        [this](std::string_view why) { events.push_back("drop:" + std::string(why)); },
    };
  }
};

using Events = std::vector<std::string>;

TEST(AmiFramerTest, BannerThenMessagesEndedByEmptyLines) {
  Recorder r;
  AmiFramer f(r.Callbacks(), true);
  f.Feed(
      "Asterisk Call Manager/5.0.2\r\n"
      "Response: Success\r\nMessage: Authentication accepted\r\n\r\n"
      "Event: FullyBooted\r\nPrivilege: system,all\r\n\r\n");
  EXPECT_EQ(r.events, (Events{"banner:Asterisk Call Manager/5.0.2",
                              "msg:Response=Success|Message=Authentication accepted",
                              "msg:Event=FullyBooted|Privilege=system,all"}));
}

TEST(AmiFramerTest, ByteAtATimeGivesTheSameMessages) {
  const std::string stream =
      "Asterisk Call Manager/2.10.4\r\nEvent: InvalidPassword\r\nAccountID: 100\r\n\r\n"
      "Event: ChallengeSent\nAccountID: 101\n\n";
  Recorder whole, trickle;
  AmiFramer a(whole.Callbacks(), true), b(trickle.Callbacks(), true);
  a.Feed(stream);
  for (char c : stream) b.Feed(std::string_view(&c, 1));
  EXPECT_EQ(trickle.events, whole.events);
  EXPECT_EQ(whole.events.size(), 3u);
}

TEST(AmiFramerTest, ValuesKeepColonsAndLoseOnlyLeadingSpaces) {
  Recorder r;
  AmiFramer f(r.Callbacks(), false);
  f.Feed("Event: X\r\nRemoteAddress: IPV6/UDP/2001:db8::1/5060\r\nEmpty:\r\n\r\n");
  EXPECT_EQ(r.events, (Events{"msg:Event=X|RemoteAddress=IPV6/UDP/2001:db8::1/5060|Empty="}));
}

TEST(AmiFramerTest, UnframedLineDropsTheMessageUntilTheNextEmptyLine) {
  Recorder r;
  AmiFramer f(r.Callbacks(), false);
  f.Feed(
      "Event: InvalidPassword\r\nthis is no header\r\nRemoteAddress: IPV4/UDP/1.2.3.4/5060\r\n\r\n"
      "Event: FailedACL\r\n\r\n");
  EXPECT_EQ(r.events,
            (Events{"drop:a line that is no 'Key: value' header", "msg:Event=FailedACL"}));
}

TEST(AmiFramerTest, OversizedMessageIsDroppedAndTheStreamResynchronised) {
  Recorder r;
  AmiFramer f(r.Callbacks(), false);
  std::string big = "Event: InvalidPassword\r\n";
  while (big.size() <= AmiFramer::kMaxMessage) big += "Filler: " + std::string(100, 'x') + "\r\n";
  f.Feed(big);
  f.Feed("RemoteAddress: IPV4/UDP/1.2.3.4/5060\r\n\r\nEvent: Next\r\n\r\n");
  EXPECT_EQ(r.events, (Events{"drop:a message longer than 64 KiB", "msg:Event=Next"}));
}

TEST(AmiFramerTest, OverlongLineIsDroppedWithoutBufferingIt) {
  Recorder r;
  AmiFramer f(r.Callbacks(), false);
  f.Feed("Event: X\r\nKey: ");
  for (int i = 0; i < 100; ++i) f.Feed(std::string(4096, 'y'));  // 400 KiB, no LF
  f.Feed("\r\nMore: z\r\n\r\nEvent: After\r\n\r\n");
  EXPECT_EQ(r.events, (Events{"drop:a line longer than 64 KiB", "msg:Event=After"}));
}

TEST(AmiFramerTest, FinishReportsAMessageCutShort) {
  Recorder r;
  AmiFramer f(r.Callbacks(), false);
  f.Feed("Event: InvalidPassword\r\nAccountID: 1");
  EXPECT_TRUE(f.Finish());
  EXPECT_TRUE(r.events.empty());
  f.Feed("Event: Y\r\n\r\n");
  EXPECT_FALSE(f.Finish());
  EXPECT_EQ(r.events, (Events{"msg:Event=Y"}));
}

AmiMessage Msg(const std::vector<std::pair<std::string_view, std::string_view>>& h) {
  AmiMessage m;
  m.headers = h;
  return m;
}

TEST(FormatSecurityEventTest, InvalidPasswordAsResSecurityLogWritesIt) {
  AmiMessage m = Msg({{"Event", "InvalidPassword"},
                      {"Privilege", "security,all"},
                      {"EventTV", "2024-03-03T09:16:00.120+0000"},
                      {"Severity", "Error"},
                      {"Service", "SIP"},
                      {"EventVersion", "2"},
                      {"AccountID", "201"},
                      {"SessionID", "0x7f2c3c01a2b0"},
                      {"LocalAddress", "IPV4/UDP/192.0.2.10/5060"},
                      {"RemoteAddress", "IPV4/UDP/203.0.113.80/5064"},
                      {"Challenge", "4f1c2a7e"},
                      {"ReceivedChallenge", "4f1c2a7e"},
                      {"ReceivedHash", "c0ffee00c0ffee00c0ffee00c0ffee00"}});
  SecurityLine out;
  ASSERT_TRUE(FormatSecurityEvent(m, 1.0e9, &out));
  EXPECT_EQ(out.line,
            "[2024-03-03 09:16:00] SECURITY[0] res_security_log.c: "
            "SecurityEvent=\"InvalidPassword\",EventTV=\"2024-03-03T09:16:00.120+0000\","
            "Severity=\"Error\",Service=\"SIP\",EventVersion=\"2\",AccountID=\"201\","
            "SessionID=\"0x7f2c3c01a2b0\",LocalAddress=\"IPV4/UDP/192.0.2.10/5060\","
            "RemoteAddress=\"IPV4/UDP/203.0.113.80/5064\",Challenge=\"4f1c2a7e\","
            "ReceivedChallenge=\"4f1c2a7e\",ReceivedHash=\"c0ffee00c0ffee00c0ffee00c0ffee00\"");
  EXPECT_TRUE(out.time_from_event);
  EXPECT_DOUBLE_EQ(out.time, 1709457360.120);
  EXPECT_FALSE(out.informational);
}

TEST(FormatSecurityEventTest, ManagerHeadersAreLeftOutAndInformationalIsFlagged) {
  AmiMessage m = Msg({{"Event", "SuccessfulAuth"},
                      {"Privilege", "security,all"},
                      {"Timestamp", "1709457366.000000"},
                      {"SystemName", "pbx1"},
                      {"SequenceNumber", "12"},
                      {"File", "res_pjsip.c"},
                      {"Line", "100"},
                      {"Func", "f"},
                      {"EventTV", "2024-03-03T10:16:06.000+0100"},
                      {"Severity", "Informational"},
                      {"Service", "PJSIP"},
                      {"EventVersion", "1"},
                      {"AccountID", "201"},
                      {"SessionID", "m9"},
                      {"LocalAddress", "IPV6/UDP/2001:db8::10/5060"},
                      {"RemoteAddress", "IPV6/UDP/2001:db8::1/5060"},
                      {"UsingPassword", "1"}});
  SecurityLine out;
  ASSERT_TRUE(FormatSecurityEvent(m, 1.0e9, &out));
  EXPECT_EQ(out.line,
            "[2024-03-03 10:16:06] SECURITY[0] res_security_log.c: "
            "SecurityEvent=\"SuccessfulAuth\",EventTV=\"2024-03-03T10:16:06.000+0100\","
            "Severity=\"Informational\",Service=\"PJSIP\",EventVersion=\"1\",AccountID=\"201\","
            "SessionID=\"m9\",LocalAddress=\"IPV6/UDP/2001:db8::10/5060\","
            "RemoteAddress=\"IPV6/UDP/2001:db8::1/5060\",UsingPassword=\"1\"");
  EXPECT_TRUE(out.informational);
  EXPECT_TRUE(out.time_from_event);
  EXPECT_DOUBLE_EQ(out.time, 1709457366.0);  // +0100 taken off
}

TEST(FormatSecurityEventTest, OtherMessagesAreNoSecurityEvents) {
  SecurityLine out;
  EXPECT_FALSE(FormatSecurityEvent(Msg({{"Response", "Success"}}), 1.0e9, &out));
  EXPECT_FALSE(FormatSecurityEvent(Msg({{"Event", "FullyBooted"}, {"Status", "x"}}), 1.0e9, &out));
  EXPECT_FALSE(
      FormatSecurityEvent(Msg({{"Event", "Newchannel"}, {"Channel", "SIP/1"}}), 1.0e9, &out));
  // An event name Asterisk may add later, recognised by its fields.
  EXPECT_TRUE(FormatSecurityEvent(Msg({{"Event", "FutureThing"},
                                       {"EventTV", "2024-03-03T09:16:00.000+0000"},
                                       {"Severity", "Error"},
                                       {"Service", "SIP"}}),
                                  1.0e9, &out));
}

TEST(FormatSecurityEventTest, WithoutEventTvTheCallersTimeIsUsed) {
  SecurityLine out;
  ASSERT_TRUE(FormatSecurityEvent(
      Msg({{"Event", "InvalidPassword"}, {"Severity", "Error"}, {"EventTV", "garbled"}}), 1.5e9,
      &out));
  EXPECT_FALSE(out.time_from_event);
  EXPECT_DOUBLE_EQ(out.time, 1.5e9);
  EXPECT_EQ(out.event_tv, "garbled");
}

TEST(FormatSecurityEventTest, QuotesInValuesAreCopiedVerbatimAsAsteriskDoes) {
  // res_security_log does not escape; the filter has to cope with forged
  // fields, and it does (a second RemoteAddress= makes the line ambiguous).
  AmiMessage m = Msg({{"Event", "InvalidAccountID"},
                      {"EventTV", "2024-03-03T09:16:00.000+0000"},
                      {"Severity", "Error"},
                      {"AccountID", "x\",RemoteAddress=\"IPV4/UDP/192.0.2.1/5060"}});
  SecurityLine out;
  ASSERT_TRUE(FormatSecurityEvent(m, 1.0e9, &out));
  EXPECT_NE(out.line.find("AccountID=\"x\",RemoteAddress=\"IPV4/UDP/192.0.2.1/5060\""),
            std::string::npos);
}

TEST(ParseEventTvTest, Forms) {
  EXPECT_DOUBLE_EQ(*ParseEventTv("2024-03-03T09:16:00.120+0000"), 1709457360.12);
  EXPECT_DOUBLE_EQ(*ParseEventTv("2024-03-03T04:16:00.120-0500"), 1709457360.12);
  EXPECT_DOUBLE_EQ(*ParseEventTv("2024-03-03T09:16:00+0000"), 1709457360.0);
  EXPECT_DOUBLE_EQ(*ParseEventTv("1283174065-307531"), 1283174065.307531);
  EXPECT_FALSE(ParseEventTv(""));
  EXPECT_FALSE(ParseEventTv("yesterday"));
  EXPECT_FALSE(ParseEventTv("2024-13-03T09:16:00+0000"));
  EXPECT_FALSE(ParseEventTv("2024-03-03T09:16:00+00"));
  EXPECT_FALSE(ParseEventTv("12-abc"));
}

TEST(LooksLikeAmiCaptureTest, BannerOrEvent) {
  EXPECT_TRUE(LooksLikeAmiCapture("Asterisk Call Manager/5.0.2\r\n"));
  EXPECT_TRUE(LooksLikeAmiCapture("Event: InvalidPassword\r\n"));
  EXPECT_TRUE(LooksLikeAmiCapture("event: x\n"));
  EXPECT_FALSE(LooksLikeAmiCapture("[2024-03-03 09:16:00] SECURITY[1] res_security_log.c: x"));
  EXPECT_FALSE(LooksLikeAmiCapture(""));
}

}  // namespace
}  // namespace bantam
