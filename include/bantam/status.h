// Status and Result<T>: how recoverable errors travel in bantam.
//
// No exception crosses a module boundary. A failed operation returns a
// Status carrying a human-readable message that already holds its context
// (for configuration errors: "file:line: message"). Result<T> is a value or
// such a Status.
#ifndef BANTAM_STATUS_H_
#define BANTAM_STATUS_H_

#include <cassert>
#include <optional>
#include <string>
#include <utility>

namespace bantam {

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK
  static Status Ok() { return Status(); }
  static Status Error(std::string message) { return Status(std::move(message)); }
  // "context: strerror(errno)" for failures at the OS boundary.
  static Status FromErrno(const std::string& context, int err);

  bool ok() const { return !message_.has_value(); }
  // Empty for an OK status.
  const std::string& message() const {
    static const std::string kEmpty;
    return message_ ? *message_ : kEmpty;
  }

 private:
  explicit Status(std::string message) : message_(std::move(message)) {}
  std::optional<std::string> message_;
};

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : status_(std::move(status)) { assert(!status_.ok()); }  // NOLINT

  bool ok() const { return value_.has_value(); }
  const Status& status() const { return status_; }
  T& value() {
    assert(ok());
    return *value_;
  }
  const T& value() const {
    assert(ok());
    return *value_;
  }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() { return value(); }
  const T& operator*() const { return value(); }

 private:
  std::optional<T> value_;
  Status status_;
};

}  // namespace bantam

#endif  // BANTAM_STATUS_H_
