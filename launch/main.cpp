#include <torch/torch.h>
#include <CLI/CLI.hpp>
int main(int argc, char** argv) {
  CLI::App app{"segkd"};
  CLI11_PARSE(app, argc, argv);
  return 0;
}
