#pragma once
/// Start-up agreement on the command line: every rank of a job must run the same subcommand with the same options
/// (config, --set overrides, --resume, --work-dir, ...). Ranks that disagree would otherwise enter different
/// collectives and wait for each other until the watchdog fires; this check fails within seconds instead.
#include <string>
#include <vector>

namespace segkd::dist {

/// The first difference between two ranks' arguments (argv without the program path), e.g.
/// "argument 1: 'train' on rank 0, 'eval' on rank 1"; "" when they are equal.
std::string describe_argument_difference(const std::vector<std::string>& a, int rank_a,
                                         const std::vector<std::string>& b, int rank_b);

/// Collective over the runtime's world communicator (dist::init must have run): gathers every rank's arguments and
/// throws DistributedError on every rank, naming the ranks and the differing argument, when any rank's differ from
/// rank 0's. A no-op for a one-rank job.
void check_command_line_agreement(int argc, char** argv);

}  // namespace segkd::dist
