// FileSource: the LogTailer as a LineSource for several jails.
#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <vector>

#include "../testing/temp_tree.h"
#include "bantam/log_tailer.h"

namespace bantam {
namespace {

using testing::TempTree;

struct Seen {
  std::string origin, text;
  std::vector<SubscriberId> subscribers;
  bool timed = false;
};

class FileSourceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    LogTailer::Options o;
    o.backend = TailBackend::kPolling;
    auto s = FileSource::Create(std::move(o), [this](const SourceLine& l) {
      seen_.push_back(
          {std::string(l.origin), std::string(l.text), *l.subscribers, l.time.has_value()});
    });
    ASSERT_TRUE(s.ok()) << s.status().message();
    source_ = std::move(*s);
  }
  void Append(const std::string& rel, const std::string& text) {
    std::ofstream(tree_.Path(rel), std::ios::app) << text;
  }
  std::vector<SourcePosition> Positions(bool changed_only) {
    std::vector<SourcePosition> out;
    source_->Positions(changed_only, &out);
    return out;
  }

  TempTree tree_;
  std::unique_ptr<FileSource> source_;
  std::vector<Seen> seen_;
};

TEST_F(FileSourceTest, AFileTwoJailsFollowIsReadOnceForBoth) {
  const std::string a = tree_.Path("a.log"), b = tree_.Path("b.log");
  Append("a.log", "a1\n");
  Append("b.log", "b1\n");
  ASSERT_TRUE(source_->Add(a, 1, false).ok());
  ASSERT_TRUE(source_->Add(b, 1, false).ok());
  ASSERT_TRUE(source_->Add(b, 2, false).ok());
  ASSERT_TRUE(source_->Poll().ok());
  ASSERT_EQ(seen_.size(), 2u);
  EXPECT_EQ(seen_[0].origin, a);
  EXPECT_EQ(seen_[0].text, "a1");
  EXPECT_EQ(seen_[0].subscribers, (std::vector<SubscriberId>{1}));
  EXPECT_EQ(seen_[1].origin, b);
  EXPECT_EQ(seen_[1].subscribers, (std::vector<SubscriberId>{1, 2}));
  EXPECT_FALSE(seen_[1].timed);  // the jail finds the date in the text

  SourceStatus s1 = source_->StatusOf(1);
  EXPECT_EQ(s1.title, "File list");
  EXPECT_EQ(s1.items, (std::vector<std::string>{a, b}));
  EXPECT_EQ(source_->StatusOf(2).items, (std::vector<std::string>{b}));
  EXPECT_TRUE(source_->StatusOf(3).items.empty());
}

TEST_F(FileSourceTest, OnlyPositionsChangedSinceMarkSavedAreReported) {
  const std::string a = tree_.Path("a.log"), b = tree_.Path("b.log");
  Append("a.log", "a1\n");
  Append("b.log", "b1\n");
  ASSERT_TRUE(source_->Add(a, 1, false).ok());
  ASSERT_TRUE(source_->Add(b, 2, false).ok());
  ASSERT_TRUE(source_->Poll().ok());

  std::vector<SourcePosition> changed = Positions(true);
  ASSERT_EQ(changed.size(), 2u);
  EXPECT_EQ(changed[0].subscriber, 1u);
  EXPECT_EQ(changed[0].name, a);
  const SavedPosition* where = std::get_if<SavedPosition>(&changed[0].where);
  ASSERT_NE(where, nullptr);
  EXPECT_EQ(where->pos, 3u);
  EXPECT_FALSE(where->first_line_hash.empty());
  for (const SourcePosition& p : changed) source_->MarkSaved(p);
  EXPECT_TRUE(Positions(true).empty());
  EXPECT_EQ(Positions(false).size(), 2u);

  Append("b.log", "b2\n");
  ASSERT_TRUE(source_->Poll().ok());
  changed = Positions(true);
  ASSERT_EQ(changed.size(), 1u);
  EXPECT_EQ(changed[0].name, b);
  EXPECT_EQ(std::get<SavedPosition>(changed[0].where).pos, 6u);
}

TEST_F(FileSourceTest, UnsubscribeDropsTheJailsFilesOnly) {
  const std::string a = tree_.Path("a.log"), b = tree_.Path("b.log");
  Append("a.log", "a1\n");
  Append("b.log", "b1\n");
  source_->Subscribe(3);  // a jail with no file yet still has a file list
  EXPECT_TRUE(source_->has_subscribers());
  ASSERT_TRUE(source_->Add(a, 1, false).ok());
  ASSERT_TRUE(source_->Add(b, 1, false).ok());
  ASSERT_TRUE(source_->Add(b, 2, false).ok());
  source_->Unsubscribe(1);
  EXPECT_EQ(source_->tailer().Find(a), nullptr);
  ASSERT_NE(source_->tailer().Find(b), nullptr);
  EXPECT_EQ(source_->tailer().Find(b)->subscribers(), (std::vector<SubscriberId>{2}));
  EXPECT_TRUE(source_->StatusOf(1).items.empty());
  source_->Remove(b, 2);
  EXPECT_EQ(source_->tailer().Find(b), nullptr);
  source_->Unsubscribe(2);
  source_->Unsubscribe(3);
  EXPECT_FALSE(source_->has_subscribers());
}

}  // namespace
}  // namespace bantam
