#include "bantam/status.h"

#include <cstring>

namespace bantam {

Status Status::FromErrno(const std::string& context, int err) {
  return Status(context + ": " + std::strerror(err));
}

}  // namespace bantam
