// placeholder: implemented by the common/ work
#include "common/config.h"
