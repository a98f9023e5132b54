#include "common/run_dir.h"
