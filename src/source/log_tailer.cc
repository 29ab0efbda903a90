#include "bantam/log_tailer.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>

namespace bantam {
namespace {

// ---- MD5 (RFC 1321), streaming. bantam before 0.1.0's package saved MD5
// first-line hashes; they are still recognised so that an upgrade resumes
// where it stopped. These digests live here rather than pulling in a crypto
// library. ----

class Md5 {
 public:
  void Update(const char* data, size_t n) {
    const auto* p = reinterpret_cast<const unsigned char*>(data);
    total_ += n;
    if (used_) {
      size_t take = std::min(n, sizeof(block_) - used_);
      std::memcpy(block_ + used_, p, take);
      used_ += take;
      p += take;
      n -= take;
      if (used_ < sizeof(block_)) return;
      Transform(block_);
      used_ = 0;
    }
    for (; n >= 64; p += 64, n -= 64) Transform(p);
    std::memcpy(block_, p, n);
    used_ = n;
  }

  // Lowercase hex, as Python's hexdigest(), into out[0..32) plus a NUL.
  void HexDigest(char out[33]) {
    uint64_t bits = total_ * 8;
    unsigned char pad[72] = {0x80};
    size_t padlen = (used_ < 56 ? 56 : 120) - used_;
    unsigned char len[8];
    for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(bits >> (8 * i));
    Update(reinterpret_cast<const char*>(pad), padlen);
    Update(reinterpret_cast<const char*>(len), 8);
    static const char kHex[] = "0123456789abcdef";
    for (int i = 0; i < 16; ++i) {
      unsigned v = (state_[i / 4] >> (8 * (i % 4))) & 0xff;
      out[2 * i] = kHex[v >> 4];
      out[2 * i + 1] = kHex[v & 15];
    }
    out[32] = '\0';
  }

 private:
  static uint32_t Rotl(uint32_t x, int c) { return (x << c) | (x >> (32 - c)); }

  void Transform(const unsigned char* p) {
    static const uint32_t kK[64] = {
        0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613,
        0xfd469501, 0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193,
        0xa679438e, 0x49b40821, 0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d,
        0x02441453, 0xd8a1e681, 0xe7d3fbc8, 0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed,
        0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a, 0xfffa3942, 0x8771f681, 0x6d9d6122,
        0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70, 0x289b7ec6, 0xeaa127fa,
        0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665, 0xf4292244,
        0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
        0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb,
        0xeb86d391};
    static const int kS[16] = {7, 12, 17, 22, 5, 9, 14, 20, 4, 11, 16, 23, 6, 10, 15, 21};
    uint32_t m[16];
    for (int i = 0; i < 16; ++i)
      m[i] = uint32_t{p[4 * i]} | uint32_t{p[4 * i + 1]} << 8 | uint32_t{p[4 * i + 2]} << 16 |
             uint32_t{p[4 * i + 3]} << 24;
    uint32_t a = state_[0], b = state_[1], c = state_[2], d = state_[3];
    for (int i = 0; i < 64; ++i) {
      uint32_t f;
      int g;
      switch (i / 16) {
        case 0: f = (b & c) | (~b & d); g = i; break;
        case 1: f = (d & b) | (~d & c); g = (5 * i + 1) % 16; break;
        case 2: f = b ^ c ^ d; g = (3 * i + 5) % 16; break;
        default: f = c ^ (b | ~d); g = (7 * i) % 16; break;
      }
      uint32_t t = d;
      d = c;
      c = b;
      b = b + Rotl(a + f + kK[i] + m[g], kS[(i / 16) * 4 + i % 4]);
      a = t;
    }
    state_[0] += a;
    state_[1] += b;
    state_[2] += c;
    state_[3] += d;
  }

  uint32_t state_[4] = {0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476};
  unsigned char block_[64];
  size_t used_ = 0;
  uint64_t total_ = 0;
};

// ---- SHA-1 (RFC 3174), streaming. fail2ban's "firstlinemd5" is SHA-1 on
// Python 3: its probe md5sum(' ') passes a str, raises TypeError, and the
// fallback hashlib.sha1 is taken. Positions are shared with fail2ban only if
// the hashes agree. ----

class Sha1 {
 public:
  void Update(const char* data, size_t n) {
    const auto* p = reinterpret_cast<const unsigned char*>(data);
    total_ += n;
    while (n > 0) {
      size_t take = std::min(n, sizeof(block_) - used_);
      std::memcpy(block_ + used_, p, take);
      used_ += take;
      p += take;
      n -= take;
      if (used_ == sizeof(block_)) {
        Transform(block_);
        used_ = 0;
      }
    }
  }

  // Lowercase hex, as Python's hexdigest(), into out[0..40) plus a NUL.
  void HexDigest(char out[41]) {
    const uint64_t bits = total_ * 8;
    unsigned char pad[72] = {0x80};
    size_t padlen = (used_ < 56 ? 56 : 120) - used_;
    unsigned char len[8];
    for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(bits >> (56 - 8 * i));
    Update(reinterpret_cast<const char*>(pad), padlen);
    Update(reinterpret_cast<const char*>(len), 8);
    static const char kHex[] = "0123456789abcdef";
    for (int i = 0; i < 20; ++i) {
      unsigned v = (state_[i / 4] >> (24 - 8 * (i % 4))) & 0xff;
      out[2 * i] = kHex[v >> 4];
      out[2 * i + 1] = kHex[v & 15];
    }
    out[40] = '\0';
  }

 private:
  static uint32_t Rotl(uint32_t x, int c) { return (x << c) | (x >> (32 - c)); }

  void Transform(const unsigned char* p) {
    uint32_t w[80];
    for (int i = 0; i < 16; ++i)
      w[i] = uint32_t{p[4 * i]} << 24 | uint32_t{p[4 * i + 1]} << 16 |
             uint32_t{p[4 * i + 2]} << 8 | uint32_t{p[4 * i + 3]};
    for (int i = 16; i < 80; ++i) w[i] = Rotl(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    uint32_t a = state_[0], b = state_[1], c = state_[2], d = state_[3], e = state_[4];
    for (int i = 0; i < 80; ++i) {
      uint32_t f, k;
      if (i < 20) {
        f = (b & c) | (~b & d);
        k = 0x5a827999;
      } else if (i < 40) {
        f = b ^ c ^ d;
        k = 0x6ed9eba1;
      } else if (i < 60) {
        f = (b & c) | (b & d) | (c & d);
        k = 0x8f1bbcdc;
      } else {
        f = b ^ c ^ d;
        k = 0xca62c1d6;
      }
      const uint32_t t = Rotl(a, 5) + f + e + k + w[i];
      e = d;
      d = c;
      c = Rotl(b, 30);
      b = a;
      a = t;
    }
    state_[0] += a;
    state_[1] += b;
    state_[2] += c;
    state_[3] += d;
    state_[4] += e;
  }

  uint32_t state_[5] = {0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476, 0xc3d2e1f0};
  unsigned char block_[64];
  size_t used_ = 0;
  uint64_t total_ = 0;
};

constexpr size_t kReadChunk = 64 * 1024;

// Directory events that can change what a path names. IN_ATTRIB catches
// link-count drops of a hard-linked log being unlinked.
constexpr uint32_t kDirMask = IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_ATTRIB |
                              IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR;
// Events on the open inode itself: growth, truncation (IN_MODIFY), and its
// own rename or deletion.
constexpr uint32_t kFileMask = IN_MODIFY | IN_ATTRIB | IN_MOVE_SELF | IN_DELETE_SELF;

std::string DirName(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

std::string BaseName(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

bool IsCompressedName(std::string_view name) {
  for (std::string_view ext : {".gz", ".bz2", ".xz", ".zst", ".lz4", ".Z", ".lzma"})
    if (name.size() > ext.size() && name.substr(name.size() - ext.size()) == ext) return true;
  return false;
}

}  // namespace

Result<TailBackend> ParseTailBackend(std::string_view backend) {
  if (backend == "auto" || backend == "pyinotify" || backend == "inotify")
    return TailBackend::kInotify;
  if (backend == "polling") return TailBackend::kPolling;
  return Status::Error("backend = '" + std::string(backend) +
                       "' is not a file backend (auto, pyinotify, inotify, polling)");
}

Result<std::unique_ptr<LogTailer>> LogTailer::Create(Options options) {
  if (!options.on_line) return Status::Error("LogTailer: no line callback");
  if (options.max_line_bytes == 0) return Status::Error("LogTailer: max_line_bytes is 0");
  int ifd = -1;
  if (options.backend == TailBackend::kInotify) {
    ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (ifd < 0) return Status::FromErrno("inotify_init1", errno);
  }
  return std::unique_ptr<LogTailer>(new LogTailer(std::move(options), ifd));
}

LogTailer::LogTailer(Options options, int inotify_fd)
    : options_(std::move(options)), inotify_fd_(inotify_fd) {
  read_buf_.resize(kReadChunk);
  // Room for many events per read(); each is at most sizeof + NAME_MAX + 1.
  event_buf_.resize(64 * (sizeof(inotify_event) + NAME_MAX + 1));
}

LogTailer::~LogTailer() {
  for (auto& f : files_)
    if (f->fd_ >= 0) ::close(f->fd_);
  if (inotify_fd_ >= 0) ::close(inotify_fd_);
}

void LogTailer::Notice(const LogFile& f, std::string_view message) {
  if (options_.on_notice) options_.on_notice(f, message);
}

Status LogTailer::Add(const std::string& path, SubscriberId subscriber, bool tail,
                      std::optional<SavedPosition> saved) {
  if (path.empty()) return Status::Error("log path is empty");
  for (auto& f : files_) {
    if (f->path_ != path) continue;
    auto it = std::lower_bound(f->subscribers_.begin(), f->subscribers_.end(), subscriber);
    if (it == f->subscribers_.end() || *it != subscriber) f->subscribers_.insert(it, subscriber);
    return Status::Ok();
  }
  files_.push_back(std::unique_ptr<LogFile>(new LogFile(path)));
  LogFile& f = *files_.back();
  f.subscribers_.push_back(subscriber);
  f.tail_ = tail;
  f.saved_ = std::move(saved);
  Open(f);
  // A file that appears later is new: read it from its start whatever
  // `tail` said.
  f.opened_once_ = true;
  f.saved_.reset();
  if (inotify_fd_ >= 0) EnsureWatches(f);
  return Status::Ok();
}

void LogTailer::Remove(const std::string& path, SubscriberId subscriber) {
  for (size_t i = 0; i < files_.size(); ++i) {
    LogFile& f = *files_[i];
    if (f.path_ != path) continue;
    auto it = std::find(f.subscribers_.begin(), f.subscribers_.end(), subscriber);
    if (it == f.subscribers_.end()) return;
    f.subscribers_.erase(it);
    if (!f.subscribers_.empty()) return;
    DropAllWatches(f);
    Close(f);
    files_.erase(files_.begin() + static_cast<std::ptrdiff_t>(i));
    return;
  }
}

const LogFile* LogTailer::Find(const std::string& path) const {
  for (auto& f : files_)
    if (f->path_ == path) return f.get();
  return nullptr;
}

std::vector<const LogFile*> LogTailer::files() const {
  std::vector<const LogFile*> out;
  for (auto& f : files_) out.push_back(f.get());
  return out;
}

// ---- opening and the first line ----

bool LogTailer::HashFirstLine(int fd, char hash[41], uint64_t* len, char* legacy_md5) {
  // fail2ban hashes readline()'s result only when it ends in a line end; a
  // first line longer than the cap is treated as unfinished.
  Sha1 sha1;
  Md5 md5;
  uint64_t off = 0;
  size_t limit = options_.max_line_bytes + 1;
  while (off < limit) {
    ssize_t n = ::pread(fd, read_buf_.data(), read_buf_.size(), static_cast<off_t>(off));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    const char* nl = static_cast<const char*>(std::memchr(read_buf_.data(), '\n', n));
    size_t take = nl ? static_cast<size_t>(nl - read_buf_.data()) + 1 : static_cast<size_t>(n);
    sha1.Update(read_buf_.data(), take);
    if (legacy_md5 != nullptr) md5.Update(read_buf_.data(), take);
    off += take;
    if (nl) {
      sha1.HexDigest(hash);
      if (legacy_md5 != nullptr) md5.HexDigest(legacy_md5);
      *len = off;
      return true;
    }
  }
  hash[0] = '\0';
  if (legacy_md5 != nullptr) legacy_md5[0] = '\0';
  *len = 0;
  return false;
}

bool LogTailer::Open(LogFile& f) {
  // O_NONBLOCK: a FIFO at the path must not hang the loop in open().
  int fd = ::open(f.path_.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    int err = errno;
    if (err == ENOENT || err == ENOTDIR) {
      if (!f.missing_noticed_) {
        f.missing_noticed_ = true;
        Notice(f, "does not exist (yet); it will be read from its start when it appears");
      }
    } else if (f.open_errno_noticed_ != err) {
      f.open_errno_noticed_ = err;
      notice_ = "cannot open: ";
      notice_ += std::strerror(err);
      Notice(f, notice_);
    }
    return false;
  }
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    if (f.open_errno_noticed_ != -1) {
      f.open_errno_noticed_ = -1;
      Notice(f, "is not a regular file; ignored until it is");
    }
    ::close(fd);
    return false;
  }
  f.missing_noticed_ = false;
  f.open_errno_noticed_ = 0;
  f.fd_ = fd;
  f.dev_ = st.st_dev;
  f.ino_ = st.st_ino;
  f.pending_.clear();
  f.discarding_ = false;
  UpdateHash(f);
  uint64_t size = static_cast<uint64_t>(st.st_size);
  uint64_t start = 0;
  if (!f.opened_once_) {
    // fail2ban: `tail` wins over a saved position (addLogPath sets the db
    // position only when not tail).
    if (f.tail_) {
      start = size;
      char last = '\n';
      if (size > 0 && ::pread(fd, &last, 1, static_cast<off_t>(size - 1)) == 1 && last != '\n')
        f.discarding_ = true;  // the rest of a line begun before we started
    } else if (f.saved_ && f.saved_->pos <= size && SavedHashMatches(f, fd)) {
      start = f.saved_->pos;
    }
    f.saved_.reset();
    f.opened_once_ = true;
  }
  f.read_off_ = start;
  f.line_start_ = start;
  if (inotify_fd_ >= 0) {
    // Watch the inode we hold, not whatever the path names by now.
    std::string self = "/proc/self/fd/" + std::to_string(fd);
    f.wd_file_ = AddWatch(self, kFileMask, &f);
    // Without /proc, the path: it named this inode a moment ago, and a
    // wrong guess is corrected by the next rotation check.
    if (f.wd_file_ < 0) f.wd_file_ = AddWatch(f.path_, kFileMask, &f);
    char resolved[PATH_MAX];
    if (::realpath(f.path_.c_str(), resolved)) {
      std::string tdir = DirName(resolved);
      if (tdir != DirName(f.path_) && tdir != f.target_dir_) {
        DropWatch(&f.wd_target_dir_, &f);
        f.target_dir_ = tdir;
      }
    }
  }
  return true;
}

void LogTailer::Close(LogFile& f) {
  if (f.fd_ < 0) return;
  DropWatch(&f.wd_file_, &f);
  ::close(f.fd_);
  f.fd_ = -1;
  f.hash_.clear();
  f.first_line_len_ = 0;
}

// ---- reading ----

void LogTailer::Deliver(LogFile& f, const char* data, size_t n, bool cut) {
  // fail2ban strips "\r\n" from line ends (rstrip); the "\n" is already gone.
  while (n > 0 && data[n - 1] == '\r') --n;
  f.line_cut_ = cut;
  options_.on_line(f, std::string_view(data, n));
  f.line_cut_ = false;
}

void LogTailer::AppendPending(LogFile& f, const char* data, size_t n) {
  if (f.discarding_) return;
  size_t room = options_.max_line_bytes - f.pending_.size();
  if (n <= room) {
    f.pending_.append(data, n);
    return;
  }
  f.pending_.append(data, room);
  Deliver(f, f.pending_.data(), f.pending_.size(), /*cut=*/true);
  f.pending_.clear();
  f.discarding_ = true;
}

// `data` holds the file bytes [read_off_ - n, read_off_).
void LogTailer::Split(LogFile& f, const char* data, size_t n) {
  uint64_t base = f.read_off_ - n;
  const char* p = data;
  const char* end = data + n;
  while (p < end) {
    const char* nl = static_cast<const char*>(std::memchr(p, '\n', static_cast<size_t>(end - p)));
    if (!nl) {
      AppendPending(f, p, static_cast<size_t>(end - p));
      return;
    }
    size_t len = static_cast<size_t>(nl - p);
    if (f.discarding_) {
      f.discarding_ = false;
    } else if (f.pending_.empty()) {
      // The common case: the whole line is in the buffer; no copy.
      if (len <= options_.max_line_bytes) {
        Deliver(f, p, len, false);
      } else {
        Deliver(f, p, options_.max_line_bytes, true);
      }
    } else {
      AppendPending(f, p, len);
      if (!f.discarding_) Deliver(f, f.pending_.data(), f.pending_.size(), false);
      f.discarding_ = false;
      f.pending_.clear();
    }
    p = nl + 1;
    f.line_start_ = base + static_cast<uint64_t>(p - data);
  }
}

void LogTailer::ReadRange(LogFile& f, int fd, uint64_t end) {
  while (f.read_off_ < end) {
    size_t want = static_cast<size_t>(std::min<uint64_t>(read_buf_.size(), end - f.read_off_));
    ssize_t n = ::pread(fd, read_buf_.data(), want, static_cast<off_t>(f.read_off_));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    f.read_off_ += static_cast<uint64_t>(n);
    Split(f, read_buf_.data(), static_cast<size_t>(n));
  }
}

// The last line of a file that will not grow any more (rotated away or
// deleted) will never get its line end: deliver what there is.
void LogTailer::FlushPartial(LogFile& f) {
  if (!f.pending_.empty() && !f.discarding_) Deliver(f, f.pending_.data(), f.pending_.size(), false);
  f.pending_.clear();
  f.discarding_ = false;
  f.line_start_ = f.read_off_;
}

void LogTailer::RestartFromTop(LogFile& f, const char* why) {
  notice_ = why;
  notice_ += " at offset " + std::to_string(f.read_off_) + "; reading from the start";
  Notice(f, notice_);
  RecoverFromRotatedCopy(f);
  FlushPartial(f);
  f.read_off_ = 0;
  f.line_start_ = 0;
  UpdateHash(f);
}

bool LogTailer::SavedHashMatches(LogFile& f, int fd) {
  const std::string& saved = f.saved_->first_line_hash;
  if (saved == f.hash_) return true;
  if (saved.size() != 32) return false;
  char sha1[41], md5[33];
  uint64_t len = 0;
  HashFirstLine(fd, sha1, &len, md5);
  return saved == md5;
}

void LogTailer::UpdateHash(LogFile& f) {
  char hex[41];
  HashFirstLine(f.fd_, hex, &f.first_line_len_);
  f.hash_.assign(hex);  // reuses the string's buffer
}

// copytruncate copies the file, then truncates it: whatever we had not read
// yet is only in the copy. Find the copy beside the file (same first line,
// at least as long as what we read, newest wins) and read the rest from it.
// fail2ban loses those lines.
void LogTailer::RecoverFromRotatedCopy(LogFile& f) {
  if (f.hash_.empty()) return;
  char resolved[PATH_MAX];
  std::string real = ::realpath(f.path_.c_str(), resolved) ? std::string(resolved) : f.path_;
  std::string dir = DirName(real);
  std::string base = BaseName(real);
  DIR* d = ::opendir(dir.c_str());
  if (!d) return;
  std::string best;
  struct timespec best_mtime = {0, 0};
  uint64_t best_size = 0;
  while (struct dirent* e = ::readdir(d)) {
    std::string_view name = e->d_name;
    if (name.size() <= base.size() || name.substr(0, base.size()) != base) continue;
    if (IsCompressedName(name)) continue;
    std::string candidate = dir + "/" + std::string(name);
    struct stat st;
    if (::stat(candidate.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    if (st.st_ino == f.ino_ && st.st_dev == f.dev_) continue;
    if (static_cast<uint64_t>(st.st_size) < f.read_off_) continue;
    if (!best.empty() && (st.st_mtim.tv_sec < best_mtime.tv_sec ||
                          (st.st_mtim.tv_sec == best_mtime.tv_sec &&
                           st.st_mtim.tv_nsec <= best_mtime.tv_nsec)))
      continue;
    int cfd = ::open(candidate.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (cfd < 0) continue;
    char h[41];
    uint64_t len = 0;
    HashFirstLine(cfd, h, &len);
    ::close(cfd);
    if (f.hash_ != h) continue;
    best = std::move(candidate);
    best_mtime = st.st_mtim;
    best_size = static_cast<uint64_t>(st.st_size);
  }
  ::closedir(d);
  if (best.empty() || best_size == f.read_off_) return;
  int cfd = ::open(best.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (cfd < 0) return;
  uint64_t from = f.read_off_;
  ReadRange(f, cfd, best_size);
  ::close(cfd);
  notice_ = "read " + std::to_string(f.read_off_ - from) + " unread bytes from the rotated copy " +
            best;
  Notice(f, notice_);
}

void LogTailer::ReadAvailable(LogFile& f) {
  struct stat st;
  if (::fstat(f.fd_, &st) != 0) return;
  uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size < f.read_off_) {
    RestartFromTop(f, "truncated");
  } else if (size > f.read_off_ && !f.hash_.empty() && f.read_off_ >= f.first_line_len_) {
    // Truncated and refilled past our offset between two looks: only the
    // first line tells (fail2ban checks it every 30 s; once per wake-up is
    // one small pread here).
    char h[41];
    uint64_t len = 0;
    HashFirstLine(f.fd_, h, &len);
    if (f.hash_ != h) RestartFromTop(f, "first line changed (copytruncate?)");
  }
  if (f.hash_.empty() && size > 0) UpdateHash(f);
  // Up to where pread finds the end, so bytes a writer adds meanwhile count;
  // or, with a per-pass budget, that much: the rest is backlog for the next
  // pass (Continue()), so one huge append cannot hold the caller's loop.
  const uint64_t budget = options_.max_bytes_per_pass;
  ReadRange(f, f.fd_, budget == 0 ? UINT64_MAX : f.read_off_ + budget);
  f.backlog_ = budget != 0 && f.read_off_ < size;
}

bool LogTailer::has_backlog() const {
  for (const auto& f : files_)
    if (f->backlog_ && f->fd_ >= 0) return true;
  return false;
}

void LogTailer::Continue() {
  for (auto& f : files_) {
    if (f->backlog_ && f->fd_ >= 0) ReadAvailable(*f);
  }
}

// The heart of both backends: bring one path up to date.
void LogTailer::Check(LogFile& f) {
  if (inotify_fd_ >= 0) EnsureWatches(f);
  if (f.fd_ < 0) {
    if (!Open(f)) return;
    ReadAvailable(f);
    return;
  }
  // Look at the path before draining the open file, so bytes written to the
  // old file up to the moment the path moved on are all read.
  struct stat st;
  int rc = ::stat(f.path_.c_str(), &st);
  int err = rc == 0 ? 0 : errno;
  ReadAvailable(f);
  if (rc == 0) {
    if (st.st_dev == f.dev_ && st.st_ino == f.ino_) return;
    // The path names another file: rename-and-create rotation, deletion and
    // re-creation, or a symlink pointed elsewhere. The old one is done:
    // read all of it, whatever the per-pass budget.
    ReadRange(f, f.fd_, UINT64_MAX);
    f.backlog_ = false;
    FlushPartial(f);
    Close(f);
    Notice(f, "rotation detected; reading the new file from its start");
    if (Open(f)) ReadAvailable(f);
    return;
  }
  if (err != ENOENT && err != ENOTDIR) return;
  struct stat own;
  if (::fstat(f.fd_, &own) == 0 && own.st_nlink > 0) {
    // Renamed away and no new file yet: the writer may still be appending
    // to it (until its post-rotate reopen), so keep reading it.
    return;
  }
  ReadRange(f, f.fd_, UINT64_MAX);
  f.backlog_ = false;
  FlushPartial(f);
  Close(f);
  f.missing_noticed_ = true;
  Notice(f, "deleted; it will be read from its start when it reappears");
}

void LogTailer::Poll() {
  for (auto& f : files_) Check(*f);
}

Status LogTailer::Process() {
  if (inotify_fd_ < 0) return Status::Ok();
  bool all = false;
  for (;;) {
    ssize_t n = ::read(inotify_fd_, event_buf_.data(), event_buf_.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) break;
      return Status::FromErrno("read inotify", errno);
    }
    if (n == 0) break;
    for (ssize_t off = 0; off < n;) {
      inotify_event ev;
      std::memcpy(&ev, event_buf_.data() + off, sizeof ev);
      off += static_cast<ssize_t>(sizeof(inotify_event) + ev.len);
      if (ev.mask & IN_Q_OVERFLOW) {
        all = true;
        continue;
      }
      auto it = watchers_.find(ev.wd);
      if (it == watchers_.end()) continue;
      for (LogFile* f : it->second) {
        f->dirty_ = true;
        if (ev.mask & IN_IGNORED) {
          // The kernel dropped the watch (directory or inode gone).
          if (f->wd_file_ == ev.wd) f->wd_file_ = -1;
          if (f->wd_dir_ == ev.wd) f->wd_dir_ = -1;
          if (f->wd_target_dir_ == ev.wd) f->wd_target_dir_ = -1;
        }
      }
      if (ev.mask & IN_IGNORED) watchers_.erase(it);
    }
  }
  // In Add() order, so that files are read in a stable order. After an
  // overflow (events were dropped) every file is checked.
  for (auto& f : files_) {
    if (!f->dirty_ && !all) continue;
    f->dirty_ = false;
    Check(*f);
  }
  return Status::Ok();
}

// ---- inotify bookkeeping ----

int LogTailer::AddWatch(const std::string& path, uint32_t mask, LogFile* f) {
  int wd = inotify_add_watch(inotify_fd_, path.c_str(), mask);
  if (wd < 0) return -1;
  auto& v = watchers_[wd];
  if (std::find(v.begin(), v.end(), f) == v.end()) v.push_back(f);
  return wd;
}

void LogTailer::DropWatch(int* wd, LogFile* f) {
  if (*wd < 0) return;
  auto it = watchers_.find(*wd);
  if (it != watchers_.end()) {
    auto& v = it->second;
    v.erase(std::remove(v.begin(), v.end(), f), v.end());
    // The same inode may be watched for another file (two jails naming one
    // directory, hard links): the kernel's watch is shared.
    bool still_used = false;
    for (LogFile* other : v)
      still_used |= other->wd_file_ == *wd || other->wd_dir_ == *wd || other->wd_target_dir_ == *wd;
    if (!still_used) {
      inotify_rm_watch(inotify_fd_, *wd);
      watchers_.erase(it);
    }
  }
  *wd = -1;
}

void LogTailer::DropAllWatches(LogFile& f) {
  DropWatch(&f.wd_file_, &f);
  DropWatch(&f.wd_dir_, &f);
  DropWatch(&f.wd_target_dir_, &f);
  f.dirty_ = false;
}

void LogTailer::EnsureWatches(LogFile& f) {
  // The directory may not exist yet; Poll() retries.
  if (f.wd_dir_ < 0) f.wd_dir_ = AddWatch(DirName(f.path_), kDirMask, &f);
  if (f.wd_target_dir_ < 0 && !f.target_dir_.empty())
    f.wd_target_dir_ = AddWatch(f.target_dir_, kDirMask, &f);
}

}  // namespace bantam

namespace bantam {

Result<std::unique_ptr<FileSource>> FileSource::Create(LogTailer::Options options,
                                                       LineCallback on_line) {
  if (!on_line) return Status::Error("FileSource: no line callback");
  std::unique_ptr<FileSource> source(new FileSource(std::move(on_line)));
  FileSource* self = source.get();
  options.on_line = [self](const LogFile& f, std::string_view text) {
    SourceLine line;
    line.text = text;
    line.subscribers = &f.subscribers();
    line.origin = f.path();
    self->on_line_(line);
  };
  Result<std::unique_ptr<LogTailer>> tailer = LogTailer::Create(std::move(options));
  if (!tailer.ok()) return tailer.status();
  source->tailer_ = std::move(*tailer);
  return source;
}

void FileSource::Subscribe(SubscriberId subscriber) { paths_[subscriber]; }

Status FileSource::Add(const std::string& path, SubscriberId subscriber, bool tail,
                       std::optional<SavedPosition> saved) {
  Subscribe(subscriber);
  if (Status s = tailer_->Add(path, subscriber, tail, std::move(saved)); !s.ok()) return s;
  // As the jail listed them, a path named twice included.
  paths_[subscriber].push_back(path);
  return Status::Ok();
}

void FileSource::Remove(const std::string& path, SubscriberId subscriber) {
  auto it = paths_.find(subscriber);
  if (it == paths_.end()) return;
  auto p = std::find(it->second.begin(), it->second.end(), path);
  if (p == it->second.end()) return;
  it->second.erase(p);
  tailer_->Remove(path, subscriber);
  saved_.erase({path, subscriber});
}

const std::vector<std::string>& FileSource::paths(SubscriberId subscriber) const {
  static const std::vector<std::string> kNone;
  auto it = paths_.find(subscriber);
  return it == paths_.end() ? kNone : it->second;
}

bool FileSource::follows(const std::string& path, SubscriberId subscriber) const {
  const std::vector<std::string>& mine = paths(subscriber);
  return std::find(mine.begin(), mine.end(), path) != mine.end();
}

Status FileSource::Poll() {
  tailer_->Poll();
  return Status::Ok();
}

void FileSource::Unsubscribe(SubscriberId subscriber) {
  auto it = paths_.find(subscriber);
  if (it == paths_.end()) return;
  for (const std::string& path : it->second) {
    tailer_->Remove(path, subscriber);
    saved_.erase({path, subscriber});
  }
  paths_.erase(it);
}

void FileSource::Positions(bool changed_only, std::vector<SourcePosition>* out) const {
  for (const LogFile* f : tailer_->files()) {
    if (f->first_line_hash().empty()) continue;
    const SavedPosition where = f->saved_position();
    for (SubscriberId id : f->subscribers()) {
      if (changed_only) {
        auto s = saved_.find({f->path(), id});
        if (s != saved_.end() && s->second == where) continue;
      }
      out->push_back(SourcePosition{id, f->path(), where});
    }
  }
}

void FileSource::MarkSaved(const SourcePosition& position) {
  const SavedPosition* where = std::get_if<SavedPosition>(&position.where);
  if (where == nullptr || !follows(position.name, position.subscriber)) return;
  saved_[{position.name, position.subscriber}] = *where;
}

SourceStatus FileSource::StatusOf(SubscriberId subscriber) const {
  return SourceStatus{"File list", paths(subscriber)};
}

}  // namespace bantam
