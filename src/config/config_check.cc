#include "bantam/config_check.h"

namespace bantam {

void CheckConfig(LoadedConfig* config) { (void)config; }

}  // namespace bantam
