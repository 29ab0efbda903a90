#include "bantam/log_tailer.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <new>
#include <fstream>
#include <string>
#include <vector>

#include "../testing/require.h"
#include "../testing/temp_tree.h"

// Counts heap allocations while g_count_allocations is set, to guard the
// hot path's promise of none per line. The replacement is global to the
// test binary but only counts; it allocates as the default one does.
namespace {
std::atomic<bool> g_count_allocations{false};
std::atomic<long> g_allocations{0};
}  // namespace

void* operator new(std::size_t n) {
  if (g_count_allocations) ++g_allocations;
  if (void* p = std::malloc(n ? n : 1)) return p;
  std::abort();  // no exceptions in bantam
}
// GCC sees free() of what it believes is new's memory once inlined; this
// new is malloc, so they match.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
#pragma GCC diagnostic pop

namespace bantam {
namespace {

namespace fs = std::filesystem;
using testing::TempTree;

constexpr char kLogrotate[] = "/usr/sbin/logrotate";

struct Line {
  std::string path;
  std::string text;
  bool cut = false;
  std::vector<SubscriberId> subscribers;
};

// A log writer as a daemon is one: an O_APPEND fd kept open across
// rotations until told to reopen (logrotate's postrotate HUP).
class Writer {
 public:
  explicit Writer(std::string path) : path_(std::move(path)) { Reopen(); }
  ~Writer() {
    if (fd_ >= 0) ::close(fd_);
  }
  void Reopen() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = ::open(path_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    ASSERT_GE(fd_, 0) << path_;
  }
  void Write(std::string_view s) {
    while (!s.empty()) {
      ssize_t n = ::write(fd_, s.data(), s.size());
      ASSERT_GT(n, 0);
      s.remove_prefix(static_cast<size_t>(n));
    }
  }
  // "line FROM\n" .. "line TO\n".
  void Lines(int from, int to) {
    for (int i = from; i <= to; ++i) Write("line " + std::to_string(i) + "\n");
  }

 private:
  std::string path_;
  int fd_ = -1;
};

std::vector<std::string> Numbered(int from, int to) {
  std::vector<std::string> out;
  for (int i = from; i <= to; ++i) out.push_back("line " + std::to_string(i));
  return out;
}

class LogTailerTest : public ::testing::TestWithParam<TailBackend> {
 protected:
  void Start(size_t max_line_bytes = LogTailer::kDefaultMaxLineBytes) {
    LogTailer::Options o;
    o.backend = GetParam();
    o.max_line_bytes = max_line_bytes;
    o.on_line = [this](const LogFile& f, std::string_view line) {
      lines_.push_back({f.path(), std::string(line), f.line_cut(), f.subscribers()});
    };
    o.on_notice = [this](const LogFile& f, std::string_view msg) {
      notices_.push_back(f.path() + ": " + std::string(msg));
    };
    auto t = LogTailer::Create(std::move(o));
    ASSERT_TRUE(t.ok()) << t.status().message();
    tailer_ = std::move(*t);
    EXPECT_EQ(tailer_->fd() >= 0, GetParam() == TailBackend::kInotify);
  }

  void Add(const std::string& path, bool tail = false,
           std::optional<SavedPosition> saved = std::nullopt, SubscriberId sub = 1) {
    ASSERT_TRUE(tailer_->Add(path, sub, tail, std::move(saved)).ok());
  }

  // What the event loop would do: with inotify, wait on fd() and Process()
  // (never Poll(), so the events alone must suffice); when polling, the
  // timer fires and Poll() runs.
  void Pump() {
    if (GetParam() == TailBackend::kPolling) {
      tailer_->Poll();
      return;
    }
    pollfd p = {tailer_->fd(), POLLIN, 0};
    while (::poll(&p, 1, 20) > 0) ASSERT_TRUE(tailer_->Process().ok());
  }

  std::vector<std::string> Texts() const {
    std::vector<std::string> out;
    for (const auto& l : lines_) out.push_back(l.text);
    return out;
  }

  void Logrotate(const std::string& log, const std::string& directives) {
    std::string conf = tree_.Path("logrotate.conf");
    std::ofstream(conf) << log << " {\n" << directives << "\n  rotate 5\n  missingok\n}\n";
    // Without logrotate this fails, CI or not, as it always did.
    ASSERT_EQ(access(kLogrotate, X_OK), 0) << testing::NeedsTool(kLogrotate, "logrotate");
    std::string cmd = std::string(kLogrotate) + " -f -s " + tree_.Path("logrotate.state") + " " +
                      conf + " 2>&1";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  }

  TempTree tree_;
  std::unique_ptr<LogTailer> tailer_;
  std::vector<Line> lines_;
  std::vector<std::string> notices_;
};

// No prefix, so that --gtest_filter='LogTailer*' selects these.
INSTANTIATE_TEST_SUITE_P(, LogTailerTest,
                         ::testing::Values(TailBackend::kInotify, TailBackend::kPolling),
                         [](const ::testing::TestParamInfo<TailBackend>& p) {
                           return p.param == TailBackend::kInotify ? "Inotify" : "Polling";
                         });

TEST_P(LogTailerTest, AppendsAreDeliveredOnceInOrder) {
  std::string log = tree_.Path("a.log");
  Writer w(log);
  w.Lines(1, 3);
  Start();
  Add(log);
  tailer_->Poll();  // the initial read after Add(), as the daemon does
  EXPECT_EQ(Texts(), Numbered(1, 3));
  w.Lines(4, 1000);
  Pump();
  Pump();
  EXPECT_EQ(Texts(), Numbered(1, 1000));
  EXPECT_EQ(tailer_->Find(log)->position(), fs::file_size(log));
}

TEST_P(LogTailerTest, ABudgetReadsABurstOverSeveralPassesWithNothingLost) {
  std::string log = tree_.Path("a.log");
  Writer w(log);
  Start();
  Add(log);
  tailer_->Poll();
  tailer_->set_max_bytes_per_pass(1000);
  w.Lines(1, 1000);  // "line N\n": about 8.9 kB
  Pump();
  EXPECT_TRUE(tailer_->has_backlog());
  EXPECT_LT(lines_.size(), 200u) << "one pass reads about its budget";
  int passes = 1;
  while (tailer_->has_backlog()) {
    tailer_->Continue();
    ++passes;
  }
  EXPECT_GE(passes, 9);
  EXPECT_EQ(Texts(), Numbered(1, 1000));
  // A rotation while a backlog is left: the old file is read to its end.
  w.Lines(1001, 2000);
  Pump();
  ASSERT_TRUE(tailer_->has_backlog());
  ASSERT_EQ(::rename(log.c_str(), (log + ".1").c_str()), 0);
  Writer fresh(log);
  fresh.Lines(2001, 2002);
  tailer_->Poll();
  while (tailer_->has_backlog()) tailer_->Continue();
  EXPECT_EQ(Texts(), Numbered(1, 2002));
}

TEST_P(LogTailerTest, PartialLineWaitsForItsLineEnd) {
  std::string log = tree_.Path("a.log");
  Writer w(log);
  Start();
  Add(log);
  tailer_->Poll();
  w.Write("first\nsec");
  Pump();
  EXPECT_EQ(Texts(), (std::vector<std::string>{"first"}));
  EXPECT_EQ(tailer_->Find(log)->position(), 6u);  // a restart reads "sec" again
  w.Write("ond");
  Pump();
  EXPECT_EQ(Texts().size(), 1u);
  w.Write("\r\n\nthird\n");
  Pump();
  // "\r" before the line end goes, as fail2ban's rstrip('\r\n'); empty lines stay.
  EXPECT_EQ(Texts(), (std::vector<std::string>{"first", "second", "", "third"}));
}

TEST_P(LogTailerTest, TailStartsAtTheEndAndSkipsAnUnfinishedLine) {
  std::string log = tree_.Path("a.log");
  Writer w(log);
  w.Write("old 1\nold 2\nhalf of a li");
  Start();
  Add(log, /*tail=*/true);
  tailer_->Poll();
  EXPECT_TRUE(lines_.empty());
  w.Write("ne begun before\nnew 1\n");
  Pump();
  EXPECT_EQ(Texts(), (std::vector<std::string>{"new 1"}));
}

TEST_P(LogTailerTest, FirstLineHashIsFail2bansMd5OfTheFirstLine) {
  std::string log = tree_.Path("a.log");
  Writer w(log);
  Start();
  Add(log);
  EXPECT_EQ(tailer_->Find(log)->first_line_hash(), "");  // empty file
  w.Write("hello");
  Pump();
  tailer_->Poll();
  EXPECT_EQ(tailer_->Find(log)->first_line_hash(), "");  // no line end yet
  w.Write("\nworld\n");
  Pump();
  // fail2ban's own value: fail2ban.server.filter.md5sum is hashlib.sha1 on
  // Python 3 (its MD5 probe raises TypeError), md5sum(b'hello\n').
  EXPECT_EQ(tailer_->Find(log)->first_line_hash(), "f572d396fae9206628714fb2ce00f72e94f2258f");

  // A first line spanning several reads (md5sum(b'x'*100000+b'\n')).
  std::string big = tree_.Path("big.log");
  Writer b(big);
  b.Write(std::string(100000, 'x') + "\n");
  Add(big);
  EXPECT_EQ(tailer_->Find(big)->first_line_hash(), "fb334361c0f321354877ee9b050a27ddfd2410d9");
}

// Positions are shared with fail2ban through its database: bantam must
// resume from what fail2ban saved (SHA-1 of the first line, see above), and
// from the MD5 that bantam builds before the package saved.
TEST_P(LogTailerTest, ResumesFromFail2bansSha1AndFromLegacyMd5Positions) {
  std::string log = tree_.Path("a.log");
  Writer w(log);
  w.Write("hello\nseen 1\nseen 2\nnew 1\n");
  const uint64_t seen = std::string("hello\nseen 1\nseen 2\n").size();
  Start();
  Add(log, false, SavedPosition{seen, "f572d396fae9206628714fb2ce00f72e94f2258f"});
  tailer_->Poll();
  EXPECT_EQ(Texts(), (std::vector<std::string>{"new 1"}));

  lines_.clear();
  Start();
  Add(log, false, SavedPosition{seen, "b1946ac92492d2347c6235b4d2611184"});
  tailer_->Poll();
  EXPECT_EQ(Texts(), (std::vector<std::string>{"new 1"}));
  EXPECT_EQ(tailer_->Find(log)->first_line_hash(), "f572d396fae9206628714fb2ce00f72e94f2258f")
      << "saved again as fail2ban reads it";

  // Neither digest of this first line: from the start.
  lines_.clear();
  Start();
  Add(log, false, SavedPosition{seen, "0123456789abcdef0123456789abcdef"});
  tailer_->Poll();
  EXPECT_EQ(Texts(), (std::vector<std::string>{"hello", "seen 1", "seen 2", "new 1"}));
}

TEST_P(LogTailerTest, ResumesAtSavedPositionOnlyWhenTheFirstLineMatches) {
  std::string log = tree_.Path("a.log");
  Writer w(log);
  w.Lines(1, 5);
  SavedPosition saved;
  {
    Start();
    Add(log);
    tailer_->Poll();
    saved = tailer_->Find(log)->saved_position();
  }
  w.Lines(6, 8);
  lines_.clear();
  Start();
  Add(log, false, saved);
  tailer_->Poll();
  EXPECT_EQ(Texts(), Numbered(6, 8));

  // Same name, another file (first line differs): from the start.
  std::string other = tree_.Path("b.log");
  Writer o(other);
  o.Write("different first\nline 2\n");
  lines_.clear();
  Add(other, false, SavedPosition{saved.pos, saved.first_line_hash}, 2);
  tailer_->Poll();
  EXPECT_EQ(Texts(), (std::vector<std::string>{"different first", "line 2"}));

  // Same first line but shorter than the saved position: from the start.
  std::string shorter = tree_.Path("c.log");
  Writer s(shorter);
  s.Lines(1, 2);
  lines_.clear();
  Add(shorter, false, SavedPosition{10000, saved.first_line_hash}, 3);
  tailer_->Poll();
  EXPECT_EQ(Texts(), Numbered(1, 2));

  // `tail` wins over a saved position, as in fail2ban's addLogPath.
  std::string tailed = tree_.Path("d.log");
  Writer t(tailed);
  t.Lines(1, 5);
  lines_.clear();
  Add(tailed, /*tail=*/true, SavedPosition{7, saved.first_line_hash}, 4);
  tailer_->Poll();
  EXPECT_TRUE(lines_.empty());
}

// logrotate `create`: rename, then a new file. The writer keeps appending
// to the renamed file until its reopen; all of it must be read, then the
// new file from its start. Three rounds so the new file's watches are tested.
TEST_P(LogTailerTest, LogrotateCreateLosesAndRepeatsNothing) {
  std::string log = tree_.Path("var/app.log");
  fs::create_directories(tree_.Path("var"));
  Writer w(log);
  Start();
  Add(log);
  tailer_->Poll();
  int n = 0;
  for (int round = 0; round < 3; ++round) {
    w.Lines(n + 1, n + 100);
    Pump();
    w.Lines(n + 101, n + 200);  // not read yet when the rotation happens
    // The last round compresses the renamed file at once: still read, through
    // the fd held on it.
    Logrotate(log, round == 2 ? "  create\n  compress" : "  create");
    w.Lines(n + 201, n + 250);  // still into the renamed file
    if (round == 1) Pump();     // a look between rotation and reopen
    w.Reopen();
    w.Lines(n + 251, n + 300);
    Pump();
    n += 300;
    ASSERT_EQ(Texts(), Numbered(1, n)) << "round " << round;
  }
  EXPECT_TRUE(fs::exists(log + ".1.gz"));
  EXPECT_TRUE(fs::exists(log + ".2"));
}

// copytruncate: lines not read before the truncation are only in the copy.
TEST_P(LogTailerTest, LogrotateCopytruncateLosesAndRepeatsNothing) {
  std::string log = tree_.Path("app.log");
  Writer w(log);
  Start();
  Add(log);
  tailer_->Poll();
  int n = 0;
  for (int round = 0; round < 3; ++round) {
    w.Lines(n + 1, n + 100);
    Pump();
    w.Lines(n + 101, n + 110);  // unread at the truncation
    Logrotate(log, "  copytruncate");
    // Round 0: the truncated file is still shorter than what we read.
    // Round 1: already longer again (only the first line shows it).
    // Round 2: a look while it is empty.
    if (round == 2) Pump();
    w.Lines(n + 111, n + (round == 1 ? 400 : 130));
    Pump();
    n += round == 1 ? 400 : 130;
    ASSERT_EQ(Texts(), Numbered(1, n)) << "round " << round;
  }
}

TEST_P(LogTailerTest, TruncationRestartsFromTheTop) {
  std::string log = tree_.Path("a.log");
  Writer w(log);
  w.Lines(1, 50);
  Start();
  Add(log);
  tailer_->Poll();
  ASSERT_EQ(::truncate(log.c_str(), 0), 0);
  Pump();
  w.Write("after truncation\n");
  Pump();
  std::vector<std::string> want = Numbered(1, 50);
  want.push_back("after truncation");
  EXPECT_EQ(Texts(), want);
}

TEST_P(LogTailerTest, DeletedFileIsReadFromItsStartWhenItReappears) {
  std::string log = tree_.Path("a.log");
  {
    Writer w(log);
    w.Lines(1, 3);
  }
  Start();
  Add(log);
  tailer_->Poll();
  {
    Writer w(log);
    w.Lines(4, 5);  // unread when deleted: still read, from the open file
  }
  ASSERT_EQ(::unlink(log.c_str()), 0);
  Pump();
  EXPECT_EQ(Texts(), Numbered(1, 5));
  EXPECT_FALSE(tailer_->Find(log)->is_open());
  {
    Writer w(log);
    w.Write("reborn 1\n");
    Pump();
    w.Write("reborn 2\n");
    Pump();
  }
  std::vector<std::string> want = Numbered(1, 5);
  want.push_back("reborn 1");
  want.push_back("reborn 2");
  EXPECT_EQ(Texts(), want);
}

TEST_P(LogTailerTest, FileCreatedAfterAddIsReadFromItsStart) {
  std::string log = tree_.Path("later.log");
  Start();
  Add(log, /*tail=*/true);  // tail applies to files that exist at Add()
  tailer_->Poll();
  tailer_->Poll();
  ASSERT_EQ(notices_.size(), 1u);  // once
  EXPECT_NE(notices_[0].find("does not exist"), std::string::npos) << notices_[0];
  Writer w(log);
  w.Lines(1, 3);
  Pump();
  EXPECT_EQ(Texts(), Numbered(1, 3));
}

// inotify cannot watch a directory that does not exist: the periodic Poll()
// picks the file up, and events drive it from then on.
TEST_P(LogTailerTest, FileInADirectoryCreatedLaterIsPickedUpByPoll) {
  std::string log = tree_.Path("later/dir/app.log");
  Start();
  Add(log);
  tailer_->Poll();
  fs::create_directories(tree_.Path("later/dir"));
  Writer w(log);
  w.Lines(1, 2);
  tailer_->Poll();  // the timer
  w.Lines(3, 4);
  Pump();
  EXPECT_EQ(Texts(), Numbered(1, 4));
  ASSERT_EQ(::unlink(log.c_str()), 0);
  Pump();
  Writer again(log);
  again.Lines(5, 5);
  Pump();
  EXPECT_EQ(Texts(), Numbered(1, 5));
}

TEST_P(LogTailerTest, HugeLinesAreCutAtTheCapAndTheRestSkipped) {
  std::string log = tree_.Path("a.log");
  Writer w(log);
  Start();
  Add(log);
  tailer_->Poll();
  std::string under(900 * 1024, 'u');
  w.Write(under.substr(0, 100000));
  Pump();
  w.Write(under.substr(100000) + "\n");
  w.Write(std::string(3 * 1024 * 1024, 'h'));
  Pump();
  w.Write("hhh\nnext\n");
  Pump();
  ASSERT_EQ(lines_.size(), 3u);
  EXPECT_EQ(lines_[0].text, under);
  EXPECT_FALSE(lines_[0].cut);
  EXPECT_EQ(lines_[1].text, std::string(LogTailer::kDefaultMaxLineBytes, 'h'));
  EXPECT_TRUE(lines_[1].cut);
  EXPECT_EQ(lines_[2].text, "next");
  EXPECT_FALSE(lines_[2].cut);
}

TEST_P(LogTailerTest, SmallCapCutsLinesWithinOneRead) {
  std::string log = tree_.Path("a.log");
  Writer w(log);
  w.Write("0123456789abc\n01234567\n012345678\n");
  Start(/*max_line_bytes=*/8);
  Add(log);
  tailer_->Poll();
  ASSERT_EQ(lines_.size(), 3u);
  EXPECT_EQ(lines_[0].text, "01234567");
  EXPECT_TRUE(lines_[0].cut);
  EXPECT_EQ(lines_[1].text, "01234567");
  EXPECT_FALSE(lines_[1].cut);
  EXPECT_TRUE(lines_[2].cut);
}

TEST_P(LogTailerTest, NulAndBinaryBytesPassThrough) {
  std::string log = tree_.Path("a.log");
  Writer w(log);
  Start();
  Add(log);
  tailer_->Poll();
  std::string junk("a\0b\xff\xfe\x01z", 7);
  w.Write(junk + "\n" + std::string(3, '\0') + "\n");
  Pump();
  EXPECT_EQ(Texts(), (std::vector<std::string>{junk, std::string(3, '\0')}));
}

TEST_P(LogTailerTest, FileSharedByJailsIsReadOnce) {
  std::string log = tree_.Path("auth.log");
  Writer w(log);
  Start();
  Add(log, false, std::nullopt, 7);
  Add(log, true, std::nullopt, 3);  // later Adds only subscribe
  Add(log, false, std::nullopt, 7);
  w.Lines(1, 2);
  tailer_->Poll();
  Pump();
  ASSERT_EQ(lines_.size(), 2u);
  EXPECT_EQ(lines_[0].subscribers, (std::vector<SubscriberId>{3, 7}));
  tailer_->Remove(log, 7);
  w.Lines(3, 3);
  Pump();
  ASSERT_EQ(lines_.size(), 3u);
  EXPECT_EQ(lines_[2].subscribers, (std::vector<SubscriberId>{3}));
  tailer_->Remove(log, 3);
  EXPECT_EQ(tailer_->Find(log), nullptr);
  w.Lines(4, 4);
  Pump();
  tailer_->Poll();
  EXPECT_EQ(lines_.size(), 3u);
}

// A symlinked log whose target is rotated in another directory.
TEST_P(LogTailerTest, SymlinkIsFollowedAcrossRotationOfItsTarget) {
  fs::create_directories(tree_.Path("real"));
  fs::create_directories(tree_.Path("links"));
  std::string target = tree_.Path("real/app.log");
  std::string link = tree_.Path("links/app.log");
  Writer w(target);
  fs::create_symlink(target, link);
  Start();
  Add(link);
  tailer_->Poll();
  w.Lines(1, 10);
  Pump();
  Logrotate(target, "  create");
  w.Lines(11, 12);
  w.Reopen();
  w.Lines(13, 20);
  Pump();
  EXPECT_EQ(Texts(), Numbered(1, 20));
}

TEST_P(LogTailerTest, SteadyStateReadingAllocatesNothing) {
  std::string log = tree_.Path("a.log");
  Writer w(log);
  w.Lines(1, 10);
  size_t count = 0, bytes = 0;
  LogTailer::Options o;
  o.backend = GetParam();
  o.on_line = [&](const LogFile&, std::string_view line) {
    ++count;
    bytes += line.size();
  };
  auto t = LogTailer::Create(std::move(o));
  ASSERT_TRUE(t.ok());
  tailer_ = std::move(*t);
  Add(log);
  tailer_->Poll();
  std::string batch;
  for (int i = 0; i < 2000; ++i) batch += "Nov 25 18:00:00 host sshd[1]: Failed password\n";
  w.Write(batch + "a partial line that spans");  // warms pending_ too
  Pump();
  std::string tail = " two reads\n" + batch;
  w.Write(tail);
  g_allocations = 0;
  g_count_allocations = true;
  Pump();
  g_count_allocations = false;
  EXPECT_EQ(g_allocations, 0);
  EXPECT_EQ(count, 10u + 4001u);
}

TEST(LogTailerBackendTest, ParsesFail2banBackendNames) {
  for (const char* b : {"auto", "pyinotify", "inotify"})
    EXPECT_EQ(*ParseTailBackend(b), TailBackend::kInotify) << b;
  EXPECT_EQ(*ParseTailBackend("polling"), TailBackend::kPolling);
  auto bad = ParseTailBackend("gamin");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(),
            "backend = 'gamin' is not a file backend (auto, pyinotify, inotify, polling)");
}

}  // namespace
}  // namespace bantam
