// Compiled once so that the precompiled <torch/torch.h> header exists for every library that reuses it.
namespace segkd { int pch_anchor = 0; }
