#include "bantam/line_source.h"

namespace bantam {

// Out of line: the key function, so the vtable is emitted here once.
LineSource::~LineSource() = default;

}  // namespace bantam
