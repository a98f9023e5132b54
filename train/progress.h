#pragma once
/// train's name for the one progress reporter (common/progress.h), used by evaluation and prediction.
#include "common/progress.h"

namespace segkd::train {
using segkd::format_duration;
using segkd::Progress;
}  // namespace segkd::train
