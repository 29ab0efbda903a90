// Shared objects loaded when a feature that needs them is configured.
//
// The Prometheus endpoint (libmicrohttpd, which brings GnuTLS and eight more
// libraries with it) and the fleet (hiredis, libcrypto) are off by default.
// Linked at build time, every start of bantamd and of the client loaded
// them: 31 shared objects instead of 18, `bantamd -V` 15 -> 38 ms and idle
// RSS 9.5 -> 13.8 MiB on this machine. Loaded with dlopen on first use, a
// configuration that does not use them does not pay for them.
#ifndef BANTAM_SHARED_LIBRARY_H_
#define BANTAM_SHARED_LIBRARY_H_

#include <string>

#include "bantam/status.h"

namespace bantam {

class SharedLibrary {
 public:
  // dlopen(soname, RTLD_NOW | RTLD_LOCAL), once per process (never
  // unloaded: function pointers taken from it stay valid). The error names
  // the file, dlerror()'s reason and the Debian package that ships it.
  static Result<const SharedLibrary*> Load(const char* soname, const char* package);

  // Looks up `name` into `*fn`; on failure an error naming the symbol.
  template <class F>
  Status Bind(const char* name, F** fn) const {
    void* p = nullptr;
    if (Status s = Symbol(name, &p); !s.ok()) return s;
    *fn = reinterpret_cast<F*>(p);
    return Status::Ok();
  }

 private:
  explicit SharedLibrary(void* handle, std::string soname)
      : handle_(handle), soname_(std::move(soname)) {}
  Status Symbol(const char* name, void** out) const;

  void* handle_;
  std::string soname_;
};

}  // namespace bantam

#endif  // BANTAM_SHARED_LIBRARY_H_
