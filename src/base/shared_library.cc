#include "bantam/shared_library.h"

#include <dlfcn.h>

#include <map>
#include <memory>
#include <mutex>

namespace bantam {

Result<const SharedLibrary*> SharedLibrary::Load(const char* soname, const char* package) {
  static std::mutex mu;
  static std::map<std::string, std::unique_ptr<SharedLibrary>>* loaded =
      new std::map<std::string, std::unique_ptr<SharedLibrary>>();  // never destroyed
  std::lock_guard<std::mutex> lock(mu);
  auto it = loaded->find(soname);
  if (it != loaded->end()) return static_cast<const SharedLibrary*>(it->second.get());
  void* handle = dlopen(soname, RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* why = dlerror();
    return Status::Error(std::string("cannot load ") + soname + " (" + (why ? why : "unknown") +
                         "); it is in the Debian package " + package);
  }
  std::unique_ptr<SharedLibrary> lib(new SharedLibrary(handle, soname));
  const SharedLibrary* out = lib.get();
  loaded->emplace(soname, std::move(lib));
  return out;
}

Status SharedLibrary::Symbol(const char* name, void** out) const {
  dlerror();
  void* p = dlsym(handle_, name);
  if (p == nullptr) {
    const char* why = dlerror();
    return Status::Error(soname_ + " has no " + name + (why ? std::string(" (") + why + ")" : ""));
  }
  *out = p;
  return Status::Ok();
}

}  // namespace bantam
