#pragma once
/// Weight files: reading PyTorch `.pth` files without Python, writing state_dicts PyTorch reads back, and
/// matching them against segkd modules by mmseg key name.
#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

#include "models/segmentor.h"

namespace segkd::models {

/// A state_dict: dotted key -> tensor, ordered by key.
using StateDict = std::map<std::string, torch::Tensor>;

/// Reads a torch.save file (zip format of PyTorch >= 1.6, or the legacy non-zip format): a plain state_dict
/// (OrderedDict or dict of tensors) or a dict with "state_dict" (mmseg checkpoints, whose "meta" may hold
/// arbitrary objects — they are skipped). Tensors come back contiguous, on the CPU, in their saved dtype.
/// Throws InputError naming the file and what was found (not a zip, no data.pkl, top-level is a list,
/// truncated, ...).
StateDict read_pth(const std::string& path);

/// Writes a state_dict that PyTorch's torch.load reads back as a dict of tensors (torch::pickle_save of a
/// c10::Dict), atomically through write_file_atomic(). Throws segkd::Error naming the path and errno ("disk full (ENOSPC)").
void write_pth(const StateDict& state, const std::string& path);

/// Parameters and buffers of `module` with their dotted names (mmseg key names for segkd models).
StateDict state_dict(torch::nn::Module& module);

/// What load_state_dict / load_pretrained_backbone could not match.
struct LoadReport {
  std::vector<std::string> missing;     ///< model keys absent from the file
  std::vector<std::string> unexpected;  ///< file keys the model does not have
  std::vector<std::string> mismatched;  ///< "key: file [a,b] vs model [c,d]"
  bool ok() const { return missing.empty() && unexpected.empty() && mismatched.empty(); }
};

/// Copies matching tensors into `module` (converted to the module's dtype/device); strict: any missing /
/// unexpected / mismatched key → InputError listing them (first few of each, with counts) and naming `source`.
/// A missing `num_batches_tracked` is tolerated (older PyTorch files lack it), as torch's own loader does.
LoadReport load_state_dict(torch::nn::Module& module, const StateDict& state, bool strict,
                           const std::string& source);

/// Loads backbone-only ImageNet weights (torchvision resnet*/efficientnet_b0, mmcv resnet*_v1c; strips
/// "backbone."/"module." prefixes; ignores fc/classifier and EfficientNet's features.8) into model->backbone
/// non-strictly and reports what did not match. Throws InputError when nothing at all matched.
LoadReport load_pretrained_backbone(Segmentor& model, const std::string& path);

/// One line summarising a report: "3 missing (a, b, c), 1 mismatched (k: file [1] vs model [2])".
std::string describe(const LoadReport& report);

}  // namespace segkd::models
