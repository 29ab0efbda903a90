#include "bantam/fleet_store.h"

#include <gtest/gtest.h>

#include "../testing/temp_tree.h"

namespace bantam {
namespace {

FleetEntry Entry(const std::string& ip, FleetOp op = FleetOp::kBan) {
  FleetEntry e;
  e.op = op;
  e.jail = "asterisk";
  e.ip = ip;
  e.left = 600;
  e.count = 1;
  e.time = 1000.5;
  return e;
}

TEST(FleetStoreTest, OutboxKeepsOrderAndSurvivesReopen) {
  testing::TempTree tree;
  const std::string db = tree.Path("bantam.sqlite3");
  {
    Result<std::unique_ptr<FleetStore>> s = FleetStore::Open(db);
    ASSERT_TRUE(s.ok()) << s.status().message();
    Result<std::vector<int64_t>> ids =
        (*s)->AddOutbox({Entry("192.0.2.1"), Entry("192.0.2.2", FleetOp::kUnban), Entry("192.0.2.3")});
    ASSERT_TRUE(ids.ok());
    ASSERT_EQ(ids->size(), 3u);
    ASSERT_TRUE((*s)->DeleteOutbox({(*ids)[0]}).ok());
  }
  Result<std::unique_ptr<FleetStore>> s = FleetStore::Open(db);
  ASSERT_TRUE(s.ok());
  auto rows = (*s)->Outbox();
  ASSERT_TRUE(rows.ok());
  ASSERT_EQ(rows->size(), 2u);
  EXPECT_EQ((*rows)[0].second.ip, "192.0.2.2");
  EXPECT_EQ((*rows)[0].second.op, FleetOp::kUnban);
  EXPECT_EQ((*rows)[1].second.ip, "192.0.2.3");
  EXPECT_EQ((*rows)[1].second.left, 600);
  EXPECT_DOUBLE_EQ((*rows)[1].second.time, 1000.5);
}

TEST(FleetStoreTest, CursorPerStreamSurvivesReopen) {
  testing::TempTree tree;
  const std::string db = tree.Path("bantam.sqlite3");
  {
    auto s = FleetStore::Open(db);
    ASSERT_TRUE(s.ok());
    EXPECT_EQ(*(*s)->Cursor("bantam:bans"), "");
    ASSERT_TRUE((*s)->SetCursor("bantam:bans", "17-0").ok());
    ASSERT_TRUE((*s)->SetCursor("bantam:bans", "18-3").ok());
    ASSERT_TRUE((*s)->SetCursor("other", "1-0").ok());
  }
  auto s = FleetStore::Open(db);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(*(*s)->Cursor("bantam:bans"), "18-3");
  EXPECT_EQ(*(*s)->Cursor("other"), "1-0");
}

TEST(FleetStoreTest, NoDatabaseFileKeepsItInMemory) {
  auto s = FleetStore::Open("None");
  ASSERT_TRUE(s.ok()) << s.status().message();
  ASSERT_TRUE((*s)->AddOutbox({Entry("192.0.2.1")}).ok());
  EXPECT_EQ((*s)->Outbox()->size(), 1u);
}

}  // namespace
}  // namespace bantam
