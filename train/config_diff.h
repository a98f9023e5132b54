#pragma once
/// Resume with a changed config: which keys of the resolved TOML changed, and whether the change alters the model.
#include <string>
#include <vector>

namespace segkd::train {

/// One key whose value differs between two resolved configs ("" = absent on that side).
struct ConfigChange {
  std::string key;     ///< "optimizer.lr", "distill.0.tau"
  std::string before;  ///< TOML text of the value in the checkpoint's config
  std::string after;   ///< TOML text of the value now
};

/// The keys that differ between two resolved configs (Config::resolved_toml), in the order of `after`.
std::vector<ConfigChange> diff_resolved_toml(const std::string& before, const std::string& after);

/// Keys whose change makes a checkpoint's weights meaningless for the model now built.
bool alters_model(const std::string& key);

/// Resuming `checkpoint` (trained with `before`) under `after`: throws ConfigError listing model-altering changes
/// (old -> new); otherwise logs one warning listing every changed key, old -> new. `before` = "" (a checkpoint older
/// than this check, with no config.toml beside it) only logs that the config cannot be compared.
void check_resume_config(const std::string& checkpoint, const std::string& before, const std::string& after);

/// The resolved config of a checkpoint: stored in it (`stored`), else `config.toml` of its run directory, else "".
std::string checkpoint_config(const std::string& checkpoint, const std::string& stored);

}  // namespace segkd::train
