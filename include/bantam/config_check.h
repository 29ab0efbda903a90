// CheckConfig: the validation behind `bantam -t`. It looks at a loaded
// configuration's resolved values (time values, integers, regexes, log
// levels, backends, dns modes) and appends one error diagnostic per problem,
// located at the file and line that defined the value. bantamd runs it on
// every load too and starts no jail it found an error in.
#ifndef BANTAM_CONFIG_CHECK_H_
#define BANTAM_CONFIG_CHECK_H_

#include "bantam/config_loader.h"

namespace bantam {

void CheckConfig(LoadedConfig* config);

}  // namespace bantam

#endif  // BANTAM_CONFIG_CHECK_H_
