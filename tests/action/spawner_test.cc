#include "bantam/spawner.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace bantam {
namespace {

SpawnRequest Argv(std::vector<std::string> argv, std::string input = "") {
  SpawnRequest r;
  r.argv = std::move(argv);
  r.input = std::move(input);
  r.timeout_seconds = 10;
  return r;
}

TEST(SpawnerArgvTest, ArgvRunsWithoutAShell) {
  ShellSpawner sp;
  SpawnResult r = sp.Run(Argv({"printf", "%s|", "$(echo no)", "a; echo no", "`x`"}));
  ASSERT_TRUE(r.ok()) << r.Describe(10) << r.err;
  EXPECT_EQ(r.out, "$(echo no)|a; echo no|`x`|");
}

TEST(SpawnerArgvTest, InputIsDeliveredOnStdin) {
  ShellSpawner sp;
  // More than a pipe or socket buffer holds: written while the child reads.
  std::string big;
  for (int i = 0; big.size() < 1024 * 1024; ++i) big += "line " + std::to_string(i) + "\n";
  SpawnRequest req = Argv({"cat"}, big);
  req.max_output = 2 * big.size();
  SpawnResult r = sp.Run(req);
  ASSERT_TRUE(r.ok()) << r.Describe(10) << r.err;
  EXPECT_EQ(r.out, big);
}

TEST(SpawnerArgvTest, ScriptGetsInputToo) {
  ShellSpawner sp;
  SpawnRequest req;
  req.script = "read x; echo \"got $x $0\"";
  req.args = {"arg0"};
  req.input = "hello\n";
  SpawnResult r = sp.Run(req);
  ASSERT_TRUE(r.ok()) << r.Describe(60) << r.err;
  EXPECT_EQ(r.out, "got hello arg0\n");
}

TEST(SpawnerArgvTest, NoInputMeansEmptyStdin) {
  ShellSpawner sp;
  SpawnResult r = sp.Run(Argv({"cat"}));
  ASSERT_TRUE(r.ok()) << r.Describe(10);
  EXPECT_EQ(r.out, "");
  EXPECT_LT(r.elapsed_seconds, 5);
}

TEST(SpawnerArgvTest, ReaderThatQuitsEarlyIsNoError) {
  ShellSpawner sp;
  // `true` never reads: the daemon must not get SIGPIPE, the run must end.
  SpawnResult r = sp.Run(Argv({"true"}, std::string(1024 * 1024, 'x')));
  EXPECT_TRUE(r.ok()) << r.Describe(10);
}

TEST(SpawnerArgvTest, OutputIsCappedAndTheWriterNotBlocked) {
  ShellSpawner sp;
  SpawnRequest req = Argv({"head", "-c", "1000000", "/dev/zero"});
  req.max_output = 1000;
  SpawnResult r = sp.Run(req);
  EXPECT_TRUE(r.ok()) << r.Describe(10);  // head wrote it all: the rest was read and dropped
  EXPECT_EQ(r.out.size(), 1000u);
  // Without max_output, the spawner's own cap applies.
  ShellSpawner small("/bin/sh", 100);
  SpawnResult s = small.Run(Argv({"head", "-c", "5000", "/dev/zero"}));
  EXPECT_TRUE(s.ok());
  EXPECT_EQ(s.out.size(), 100u);
  // The cap holds for stderr on its own.
  SpawnRequest e = Argv({"sh", "-c", "head -c 5000 /dev/zero >&2; echo out"});
  e.max_output = 10;
  SpawnResult t = sp.Run(e);
  EXPECT_EQ(t.err.size(), 10u);
  EXPECT_EQ(t.out, "out\n");
}

TEST(SpawnerArgvTest, MergedStderrGoesToOut) {
  ShellSpawner sp;
  SpawnRequest req = Argv({"sh", "-c", "echo a; echo b >&2"});
  req.merge_stderr = true;
  SpawnResult r = sp.Run(req);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.out, "a\nb\n");
  EXPECT_EQ(r.err, "");
}

TEST(SpawnerArgvTest, TimeoutKillsTheArgv) {
  ShellSpawner sp;
  SpawnRequest req = Argv({"sh", "-c", "echo partial; exec sleep 10"}, "ignored input");
  req.timeout_seconds = 0.3;
  SpawnResult r = sp.Run(req);
  EXPECT_EQ(r.end, SpawnResult::End::kTimedOut);
  EXPECT_EQ(r.out, "partial\n");
  EXPECT_LT(r.elapsed_seconds, 5);
  EXPECT_EQ(r.Describe(0.3), "timed out after 0.3 seconds (process group killed)");
}

TEST(SpawnerArgvTest, MissingProgramFailsToStart) {
  ShellSpawner sp;
  SpawnResult r = sp.Run(Argv({"no-such-program-bantam"}, "input"));
  EXPECT_EQ(r.end, SpawnResult::End::kFailedToStart);
  EXPECT_EQ(r.error, "no-such-program-bantam: No such file or directory");
  EXPECT_EQ(r.Describe(10), "failed to start: no-such-program-bantam: No such file or directory");
}

TEST(SpawnerArgvTest, ExitStatusOfAnArgv) {
  ShellSpawner sp;
  SpawnResult r = sp.Run(Argv({"sh", "-c", "exit 7"}));
  EXPECT_EQ(r.end, SpawnResult::End::kExited);
  EXPECT_EQ(r.exit_code, 7);
}

}  // namespace
}  // namespace bantam
